"""Evaluation metrics with stated ranges. Pure functions over numpy arrays.

Ranking metrics work on flat arrays plus a `group_ids` array (one group = one deal), the layout
LightGBM's lambdarank and the pair-feature frames use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score
from sklearn.metrics import log_loss as _sk_log_loss

from models.calibration import PROBABILITY_EPSILON, log_loss

FloatArray = npt.NDArray[np.float64]
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_LEVEL = 0.95


@dataclass(frozen=True)
class Slates:
    """Oracle evaluation: candidate partners per test deal with their true win probability."""

    features: pd.DataFrame
    gains: np.ndarray  # (rows,) true win probability
    group_ids: np.ndarray  # (rows,) deal row
    tenure_days: np.ndarray  # (rows,)


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve in [0, 1]; 0.5 is chance. NaN when only one class is present."""
    labels_arr = np.asarray(labels).astype(int)
    if labels_arr.min(initial=0) == labels_arr.max(initial=0):
        return float("nan")
    return float(roc_auc_score(labels_arr, np.asarray(scores, dtype=float)))


def expected_calibration_error(labels: npt.ArrayLike, probabilities: npt.ArrayLike, bins: int = 15) -> float:
    """ECE in [0, 1]: the row-weighted mean |observed rate - mean probability| over equal-width bins."""
    labels_arr = np.asarray(labels, dtype=float)
    probs = np.clip(np.asarray(probabilities, dtype=float), 0.0, 1.0)
    if probs.size == 0:
        return float("nan")
    bin_index = np.minimum((probs * bins).astype(int), bins - 1)
    counts = np.bincount(bin_index, minlength=bins)
    prob_sums = np.bincount(bin_index, weights=probs, minlength=bins)
    label_sums = np.bincount(bin_index, weights=labels_arr, minlength=bins)
    filled = counts > 0
    gaps = np.abs(label_sums[filled] - prob_sums[filled])
    return float(gaps.sum() / probs.size)


def calibration_table(labels: npt.ArrayLike, probabilities: npt.ArrayLike, bins: int = 15) -> dict[str, list[float]]:
    """Per equal-width bin: mean predicted probability, observed rate and row count (non-empty bins)."""
    labels_arr = np.asarray(labels, dtype=float)
    probs = np.clip(np.asarray(probabilities, dtype=float), 0.0, 1.0)
    bin_index = np.minimum((probs * bins).astype(int), bins - 1)
    counts = np.bincount(bin_index, minlength=bins)
    filled = counts > 0
    mean_prob = np.bincount(bin_index, weights=probs, minlength=bins)[filled] / counts[filled]
    observed = np.bincount(bin_index, weights=labels_arr, minlength=bins)[filled] / counts[filled]
    return {
        "mean_probability": mean_prob.tolist(),
        "observed_rate": observed.tolist(),
        "rows": counts[filled].astype(float).tolist(),
    }


def _order_within_groups(group_ids: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Row order: by group, then by `keys` descending (stable, so ties keep input order)."""
    return np.lexsort((-keys, group_ids))


def _rank_within_groups(sorted_group_ids: np.ndarray) -> np.ndarray:
    """0-based position of each row within its group, for rows already sorted by group."""
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_group_ids)) + 1]
    sizes = np.diff(np.r_[starts, sorted_group_ids.size])
    return np.arange(sorted_group_ids.size) - np.repeat(starts, sizes)


def _dcg_per_group(
    group_ids: np.ndarray, gains: np.ndarray, order: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    sorted_groups = group_ids[order]
    positions = _rank_within_groups(sorted_groups)
    discounted = np.where(positions < k, gains[order] / np.log2(positions + 2.0), 0.0)
    unique_groups, inverse = np.unique(sorted_groups, return_inverse=True)
    return unique_groups, np.bincount(inverse, weights=discounted)


def ndcg_at_k(gains: npt.ArrayLike, scores: npt.ArrayLike, group_ids: npt.ArrayLike, k: int) -> float:
    """Mean NDCG@k over groups, in [0, 1]; 1 means each group's top k is ordered as by `gains`.

    `gains` are non-negative relevances (here: the generator's true win probability, so this is the
    expected DCG of binary outcomes); linear gains, log2 discount. Groups whose gains are all zero
    are skipped. Score ties are broken by input order.
    """
    gains_arr = np.asarray(gains, dtype=float)
    if np.any(gains_arr < 0):
        raise ValueError("gains must be non-negative")
    scores_arr = np.asarray(scores, dtype=float)
    groups_arr = np.asarray(group_ids)
    _, dcg = _dcg_per_group(groups_arr, gains_arr, _order_within_groups(groups_arr, scores_arr), k)
    _, ideal = _dcg_per_group(groups_arr, gains_arr, _order_within_groups(groups_arr, gains_arr), k)
    valid = ideal > 0
    return float(np.mean(dcg[valid] / ideal[valid])) if valid.any() else float("nan")


def hit_at_1(gains: npt.ArrayLike, scores: npt.ArrayLike, group_ids: npt.ArrayLike) -> float:
    """Share of groups, in [0, 1], whose top-scored row has the group's maximal gain."""
    gains_arr = np.asarray(gains, dtype=float)
    groups_arr = np.asarray(group_ids)
    order = _order_within_groups(groups_arr, np.asarray(scores, dtype=float))
    sorted_groups = groups_arr[order]
    first = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]
    top_gain = gains_arr[order][first]
    unique_groups, inverse = np.unique(groups_arr, return_inverse=True)
    best_gain = np.full(unique_groups.size, -np.inf)
    np.maximum.at(best_gain, inverse, gains_arr)
    return float(np.mean(np.isclose(top_gain, best_gain)))


def binary_metrics(labels: npt.ArrayLike, probabilities: npt.ArrayLike) -> dict[str, float]:
    """ROC-AUC, log-loss and ECE of calibrated probabilities, plus the row count."""
    labels_arr = np.asarray(labels)
    return {
        "roc_auc": roc_auc(labels_arr, probabilities),
        "log_loss": log_loss(labels_arr, probabilities),
        "ece": expected_calibration_error(labels_arr, probabilities),
        "rows": float(labels_arr.size),
    }


def bootstrap_interval(
    statistic: Callable[..., float],
    *arrays: npt.ArrayLike,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval (low, high) of `statistic(*arrays)` at confidence `level` in (0, 1).

    Each of `resamples` draws picks n rows with replacement, the same rows of every (n,) array, so
    paired statistics (model A vs model B on the same labels) keep their pairing. Draws where the
    statistic is NaN (ROC-AUC of a one-class draw) are left out. Seeded: same inputs, same interval.
    """
    columns = [np.asarray(values) for values in arrays]
    rows = columns[0].shape[0]
    if rows == 0:
        return float("nan"), float("nan")
    draws = np.random.default_rng(seed).integers(0, rows, size=(resamples, rows))
    values = np.array([statistic(*(column[draw] for column in columns)) for draw in draws], dtype=np.float64)
    tail = (1.0 - level) / 2.0
    low, high = np.nanquantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def grouped_difference_interval(
    statistic: Callable[[np.ndarray, np.ndarray], float],
    labels: npt.ArrayLike,
    ours: npt.ArrayLike,
    other: npt.ArrayLike,
    groups: npt.ArrayLike,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = 0,
) -> dict[str, float]:
    """statistic(labels, ours) - statistic(labels, other) with a percentile bootstrap interval that
    resamples whole groups (e.g. partners, whose rows are correlated), both scores on the same draw.
    Returns {"difference", "ci_low", "ci_high"}; draws where the statistic is NaN are left out."""
    labels_arr, ours_arr, other_arr = np.asarray(labels), np.asarray(ours), np.asarray(other)
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(inverse.max(initial=-1) + 2))
    rows_of = [order[bounds[group] : bounds[group + 1]] for group in range(bounds.size - 1)]

    def difference(rows: np.ndarray) -> float:
        return statistic(labels_arr[rows], ours_arr[rows]) - statistic(labels_arr[rows], other_arr[rows])

    rng = np.random.default_rng(seed)
    values = np.array(
        [
            difference(np.concatenate([rows_of[group] for group in rng.integers(0, len(rows_of), len(rows_of))]))
            for _ in range(resamples)
        ]
    )
    tail = (1.0 - level) / 2.0
    low, high = np.nanquantile(values, [tail, 1.0 - tail]) if len(rows_of) else (np.nan, np.nan)
    return {"difference": difference(np.arange(labels_arr.size)), "ci_low": float(low), "ci_high": float(high)}


def binary_metrics_with_intervals(
    labels: npt.ArrayLike, probabilities: npt.ArrayLike, seed: int = 0
) -> dict[str, float]:
    """`binary_metrics` plus `<metric>_ci_low` / `<metric>_ci_high`: 95% bootstrap intervals (1,000
    seeded resamples) of roc_auc, log_loss and ece."""
    metrics = binary_metrics(labels, probabilities)
    for name, statistic in (("roc_auc", roc_auc), ("log_loss", log_loss), ("ece", expected_calibration_error)):
        low, high = bootstrap_interval(statistic, labels, probabilities, seed=seed)
        metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = low, high
    return metrics


def ranking_metrics(
    gains: npt.ArrayLike, scores: npt.ArrayLike, group_ids: npt.ArrayLike, ks: tuple[int, ...] = (1, 5, 10)
) -> dict[str, float]:
    """`ndcg_at_<k>` for each k and `hit_at_1` against oracle gains."""
    metrics = {f"ndcg_at_{k}": ndcg_at_k(gains, scores, group_ids, k) for k in ks}
    metrics["hit_at_1"] = hit_at_1(gains, scores, group_ids)
    return metrics


def ndcg_by_slice(
    gains: npt.ArrayLike, scores: npt.ArrayLike, group_ids: npt.ArrayLike, slice_labels: npt.ArrayLike, k: int = 10
) -> dict[str, float]:
    """NDCG@k per slice: each group is cut down to its rows of that slice (e.g. partner tenure band)."""
    labels = np.asarray(slice_labels).astype(str)
    gains_arr, scores_arr, groups_arr = (np.asarray(gains), np.asarray(scores), np.asarray(group_ids))
    return {
        label: ndcg_at_k(gains_arr[labels == label], scores_arr[labels == label], groups_arr[labels == label], k)
        for label in sorted(set(labels.tolist()))
    }


def spearman(values: npt.ArrayLike, reference: npt.ArrayLike) -> float:
    """Spearman rank correlation in [-1, 1] (ties get mean ranks); NaN when either side is constant."""
    values_arr, reference_arr = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    if values_arr.size < 2 or np.ptp(values_arr) == 0 or np.ptp(reference_arr) == 0:
        return float("nan")
    return float(spearmanr(values_arr, reference_arr).statistic)


def first_relevant_ranks(scores: np.ndarray, relevant: np.ndarray, seed: int = 0) -> np.ndarray:
    """(q,) 1-based rank of the best-ranked relevant candidate per query row.

    `scores` (q, c) higher is better; `relevant` (q, c) bool with at least one True per row. Ties
    are broken at random (seeded), so a constant scorer earns chance-level ranks, not the best.
    """
    if scores.shape != relevant.shape or not relevant.any(axis=1).all():
        raise ValueError("scores and relevant must have one shape and every row a relevant candidate")
    tie_breaker = np.random.default_rng(seed).random(scores.shape)
    order = np.lexsort((tie_breaker, -scores), axis=-1)
    relevant_in_order = np.take_along_axis(relevant, order, axis=1)
    return relevant_in_order.argmax(axis=1) + 1


def ranking_hits(ranks: np.ndarray) -> dict[str, np.ndarray]:
    """Per-query `top_1`, `top_5` (0/1) and reciprocal rank (`mrr`, in (0, 1]) from 1-based ranks."""
    ranks = np.asarray(ranks, dtype=float)
    return {"top_1": (ranks <= 1).astype(float), "top_5": (ranks <= 5).astype(float), "mrr": 1.0 / ranks}


def class_metrics(labels: npt.ArrayLike, predicted: npt.ArrayLike, classes: tuple[str, ...]) -> dict[str, float]:
    """Accuracy, macro-F1 and `f1_<class>` per class, each in [0, 1], plus the row count.

    `labels` and `predicted` are (n,) int indexes into `classes`; a class absent from both scores F1 0.
    """
    labels_arr, predicted_arr = np.asarray(labels), np.asarray(predicted)
    indexes = list(range(len(classes)))
    per_class = f1_score(labels_arr, predicted_arr, labels=indexes, average=None, zero_division=0.0)
    return {
        "accuracy": float(accuracy_score(labels_arr, predicted_arr)),
        "macro_f1": float(np.mean(per_class)),
        **{f"f1_{name}": float(score) for name, score in zip(classes, per_class, strict=True)},
        "rows": float(labels_arr.size),
    }


def multiclass_calibration_metrics(labels: npt.ArrayLike, probabilities: npt.ArrayLike) -> dict[str, float]:
    """Log-loss (nats, >= 0; probabilities clipped to 1e-6) and top-label ECE in [0, 1] of (n, k)
    class probabilities against (n,) int class indexes."""
    labels_arr = np.asarray(labels).astype(int)
    probs = np.clip(np.asarray(probabilities, dtype=float), PROBABILITY_EPSILON, 1.0)
    probs = probs / probs.sum(axis=1, keepdims=True)
    top = probs.argmax(axis=1)
    return {
        "log_loss": float(_sk_log_loss(labels_arr, probs, labels=list(range(probs.shape[1])))),
        "ece": expected_calibration_error(top == labels_arr, probs.max(axis=1)),
    }


def average_precision(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the precision-recall curve in [0, 1]; the positive rate is chance. NaN without positives."""
    labels_arr = np.asarray(labels).astype(int)
    if labels_arr.sum() == 0:
        return float("nan")
    return float(average_precision_score(labels_arr, np.asarray(scores, dtype=float)))
