import numpy as np
import pytest

from training import evaluate


def test_roc_auc_limits() -> None:
    labels = np.array([0, 0, 1, 1])
    assert evaluate.roc_auc(labels, [0.1, 0.2, 0.8, 0.9]) == pytest.approx(1.0)
    assert evaluate.roc_auc(labels, [0.9, 0.8, 0.2, 0.1]) == pytest.approx(0.0)
    assert np.isnan(evaluate.roc_auc([1, 1], [0.2, 0.3]))


def test_log_loss_and_ece_of_perfect_calibration() -> None:
    rng = np.random.default_rng(0)
    probabilities = rng.uniform(0.05, 0.95, 200_000)
    labels = rng.random(probabilities.size) < probabilities
    assert evaluate.expected_calibration_error(labels, probabilities) < 0.01
    assert evaluate.expected_calibration_error(labels, np.clip(probabilities + 0.2, 0, 1)) > 0.15
    assert evaluate.log_loss([1, 0], [1.0, 0.0]) == pytest.approx(0.0, abs=1e-5)


def test_ndcg_perfect_reversed_and_ties() -> None:
    gains = np.array([0.9, 0.5, 0.1, 0.8, 0.2, 0.0])
    groups = np.array([0, 0, 0, 1, 1, 1])
    assert evaluate.ndcg_at_k(gains, gains, groups, 10) == pytest.approx(1.0)
    reversed_score = evaluate.ndcg_at_k(gains, -gains, groups, 10)
    assert 0 < reversed_score < 1
    # Top-1 only: group 0 picks gain 0.1 of best 0.9; group 1 picks 0.0 of best 0.8.
    assert evaluate.ndcg_at_k(gains, -gains, groups, 1) == pytest.approx((0.1 / 0.9 + 0.0) / 2)
    assert evaluate.hit_at_1(gains, gains, groups) == 1.0
    assert evaluate.hit_at_1(gains, -gains, groups) == 0.0
    with pytest.raises(ValueError):
        evaluate.ndcg_at_k(-gains, gains, groups, 5)


def test_ndcg_by_slice_cuts_groups() -> None:
    gains = np.array([0.9, 0.5, 0.1, 0.8])
    scores = np.array([0.1, 0.5, 0.7, 0.8])
    groups = np.array([0, 0, 0, 0])
    by_slice = evaluate.ndcg_by_slice(gains, scores, groups, np.array(["a", "a", "b", "b"]))
    assert by_slice["b"] == pytest.approx(1.0)
    assert by_slice["a"] < 1.0


def test_calibration_table_rows_sum() -> None:
    table = evaluate.calibration_table([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.2])
    assert sum(table["rows"]) == 4


def test_bootstrap_interval_covers_the_estimate_narrows_with_rows_and_is_seeded() -> None:
    rng = np.random.default_rng(1)
    small, large = rng.normal(2.0, 1.0, 100), rng.normal(2.0, 1.0, 10_000)
    low, high = evaluate.bootstrap_interval(np.mean, small, seed=3)
    assert low < small.mean() < high
    # The percentile interval of a mean: about +-1.96 standard errors.
    assert high - low == pytest.approx(2 * 1.96 * small.std() / 10, rel=0.15)
    large_low, large_high = evaluate.bootstrap_interval(np.mean, large, seed=3)
    assert large_high - large_low < (high - low) / 5
    assert evaluate.bootstrap_interval(np.mean, small, seed=3) == (low, high)


def test_bootstrap_keeps_pairs_together() -> None:
    labels = np.tile([0, 1], 200)
    better, worse = np.where(labels == 1, 0.8, 0.2), np.where(labels == 1, 0.6, 0.4)
    gain_low, gain_high = evaluate.bootstrap_interval(
        lambda y, a, b: evaluate.log_loss(y, b) - evaluate.log_loss(y, a), labels, better, worse, resamples=200
    )
    assert 0.0 < gain_low <= gain_high  # the better model wins on every resample


def test_binary_metrics_with_intervals() -> None:
    rng = np.random.default_rng(2)
    probabilities = rng.uniform(0.05, 0.95, 2000)
    labels = (rng.random(2000) < probabilities).astype(int)
    metrics = evaluate.binary_metrics_with_intervals(labels, probabilities)
    for name in ("roc_auc", "log_loss", "ece"):
        assert metrics[f"{name}_ci_low"] <= metrics[name] <= metrics[f"{name}_ci_high"]
    assert metrics["rows"] == 2000


def test_grouped_difference_interval_resamples_groups_and_keeps_the_pairing() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(100), 10)  # 100 partners, 10 rows each
    labels = (rng.random(groups.size) < 0.3).astype(int)
    noise = rng.random(groups.size)
    informative = labels + 0.8 * noise
    same = evaluate.grouped_difference_interval(evaluate.roc_auc, labels, noise, noise, groups, resamples=100)
    assert same == {"difference": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    better = evaluate.grouped_difference_interval(evaluate.roc_auc, labels, informative, noise, groups, resamples=100)
    assert better["difference"] == pytest.approx(
        evaluate.roc_auc(labels, informative) - evaluate.roc_auc(labels, noise)
    )
    assert 0.0 < better["ci_low"] < better["difference"] < better["ci_high"]
