"""Lookalike: an offline test of fit ranking on real data.

Each chooser (a partner, investor or acquirer) is profiled by the entities it chose before a
cutoff; every entity after the cutoff ranks every profiled chooser by fit, and a hit is any
chooser that really chose it. Systems, scored on the same entities and candidates:
- `model`: a learned fit ranker (logistic regression on pair features: mean cosine of the entity's
  profile embedding to the chooser's `neighbours` nearest past choices, cosine to the chooser's
  embedding centroid (both also as lifts over an average entity) and TF-IDF centroid, the
  similarity-weighted votes of the entity's `vote_neighbours` nearest past entities for the
  chooser, and the chooser's log portfolio size, plain and recency-weighted with a half-life of
  `half_life_days`: the popularity prior);
- `model_without_popularity`: the same ranker without the popularity prior;
- baselines `popularity` (portfolio size) and `tfidf_centroid` (TF-IDF cosine to the chooser's centroid).
The ranker is fitted on the data before the cutoff only, by rolling origins: the pre-cutoff
entities are cut into `folds` date-ordered chunks, and each chunk after the first is ranked with
profiles from the rows before it. Metrics (top_1, top_5, mrr) carry seeded bootstrap intervals
over test entities; `model_minus_<baseline>` gives paired intervals of the differences.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from features.embed import Encoder, make_encoder
from features.lookalike import CHOSEN_BY, DATE, ENTITY_ID, TEXT, read_lookalike
from features.progress import SILENT, Progress
from training.evaluate import bootstrap_interval, first_relevant_ranks, ranking_hits

PAIR_FEATURES: tuple[str, ...] = (
    "knn_similarity",
    "knn_lift",
    "centroid_lift",
    "tfidf_similarity",
    "neighbour_vote",
    "log_portfolio",
    "log_decayed_portfolio",
)
FEATURE_INDEX = {name: position for position, name in enumerate(PAIR_FEATURES)}
POPULARITY_FEATURES = ("log_portfolio", "log_decayed_portfolio")  # the popularity prior
BASELINES: tuple[str, ...] = ("popularity", "tfidf_centroid")


@dataclass(frozen=True)
class LookalikeConfig:
    encoder: str = "minilm-onnx-int8"
    neighbours: int = 3  # knn_similarity averages the cosine to this many nearest past choices
    vote_neighbours: int = 30  # neighbour_vote: the entity's nearest past entities that vote for their choosers
    half_life_days: float = 730.0  # log_decayed_portfolio: a choice this old before the history ends counts half
    folds: int = 4  # rolling origins for fitting the ranker before the cutoff
    regularisation: float = 1.0  # inverse L2 strength of the logistic regression
    bootstrap_resamples: int = 1000
    seed: int = 0


@dataclass(frozen=True)
class _Entities:
    """Unique entities (date order) with their embeddings (n, d) and TF-IDF rows (n, V), both L2-normalised."""

    table: pd.DataFrame  # ENTITY_ID, TEXT, DATE
    vectors: np.ndarray
    tfidf: np.ndarray


def _entities(rows: pd.DataFrame, cutoff: pd.Timestamp, encoder: Encoder) -> _Entities:
    table = rows.drop_duplicates(ENTITY_ID)[[ENTITY_ID, TEXT, DATE]].sort_values([DATE, ENTITY_ID], kind="stable")
    table = table.reset_index(drop=True)
    texts = table[TEXT].tolist()
    # The vocabulary and IDF come from the texts before the cutoff only.
    vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=1)
    vectorizer.fit([text for text, date in zip(texts, table[DATE], strict=True) if date < cutoff])
    return _Entities(table=table, vectors=encoder.encode(texts), tfidf=vectorizer.transform(texts).toarray())


def _normalised(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def pair_features(
    entities: _Entities, history: pd.DataFrame, queries: np.ndarray, config: LookalikeConfig
) -> tuple[list[str], np.ndarray]:
    """Candidates (every chooser in `history`, sorted) and (q, c, len(PAIR_FEATURES)) features of
    each query entity (positions in `entities.table`) against each candidate's profile.

    The lifts subtract what the chooser's profile scores on an average entity of the history (its
    own choices left out), so that a broad portfolio, close to everything, does not win on
    similarity alone: text says how unusually close the entity is to this chooser.
    """
    position = pd.Series(np.arange(len(entities.table)), index=entities.table[ENTITY_ID])
    members = history.groupby(CHOSEN_BY)[ENTITY_ID].agg(lambda ids: position[ids.unique()].to_numpy())
    choosers = sorted(members.index)
    base = position[history[ENTITY_ID].unique()].to_numpy()
    age_days = (history[DATE].max() - history[DATE]).dt.days.to_numpy()
    decayed_counts = pd.Series(0.5 ** (age_days / config.half_life_days)).groupby(history[CHOSEN_BY].to_numpy()).sum()
    similarity = entities.vectors[queries] @ entities.vectors.T  # (q, n) cosine
    base_similarity = entities.vectors[base] @ entities.vectors.T  # (b, n)
    features = np.zeros((queries.size, len(choosers), len(PAIR_FEATURES)), dtype=np.float64)
    centroids = _normalised(np.stack([entities.vectors[members[chooser]].mean(axis=0) for chooser in choosers]))
    tfidf_centroids = _normalised(np.stack([entities.tfidf[members[chooser]].mean(axis=0) for chooser in choosers]))
    base_centroid = entities.vectors[base] @ centroids.T  # (b, c)
    for column, chooser in enumerate(choosers):
        chosen = members[chooser]
        knn = _mean_nearest(similarity[:, chosen], config.neighbours)
        outsiders = ~np.isin(base, chosen)
        typical_knn = _mean_nearest(base_similarity[np.ix_(outsiders, chosen)], config.neighbours).mean()
        typical_centroid = base_centroid[outsiders, column].mean() if outsiders.any() else 0.0
        features[:, column, FEATURE_INDEX["knn_similarity"]] = knn
        features[:, column, FEATURE_INDEX["knn_lift"]] = knn - (typical_knn if outsiders.any() else 0.0)
        features[:, column, FEATURE_INDEX["centroid_lift"]] = (
            entities.vectors[queries] @ centroids[column] - typical_centroid
        )
        features[:, column, FEATURE_INDEX["log_portfolio"]] = np.log1p(chosen.size)
        features[:, column, FEATURE_INDEX["log_decayed_portfolio"]] = np.log1p(decayed_counts[chooser])
    features[:, :, FEATURE_INDEX["tfidf_similarity"]] = entities.tfidf[queries] @ tfidf_centroids.T
    chose = np.zeros((base.size, len(choosers)))  # (b, c) past entity x chooser, 1 when chosen
    column_of = {chooser: column for column, chooser in enumerate(choosers)}
    row_of = {entity: row for row, entity in enumerate(base)}
    chose[
        [row_of[entity] for entity in position[history[ENTITY_ID]].to_numpy()],
        [column_of[chooser] for chooser in history[CHOSEN_BY]],
    ] = 1.0
    features[:, :, FEATURE_INDEX["neighbour_vote"]] = np.log1p(
        _nearest_only(similarity[:, base], config.vote_neighbours) @ chose
    )
    return choosers, features


def _nearest_only(similarity: np.ndarray, neighbours: int) -> np.ndarray:
    """(rows, n) `similarity` with all but each row's `neighbours` largest values (and negatives) set to 0."""
    kept = np.zeros_like(similarity)
    nearest = np.argsort(-similarity, axis=1)[:, :neighbours]
    np.put_along_axis(kept, nearest, np.take_along_axis(similarity, nearest, axis=1), axis=1)
    return np.maximum(kept, 0.0)


def _mean_nearest(similarity: np.ndarray, neighbours: int) -> np.ndarray:
    """(rows,) mean of each row's `neighbours` largest values."""
    return -np.sort(-similarity, axis=1)[:, :neighbours].mean(axis=1)


def _labels(rows: pd.DataFrame, entities: _Entities, queries: np.ndarray, choosers: list[str]) -> np.ndarray:
    """(q, c) bool: the candidate chose the query entity."""
    chosen = set(zip(rows[ENTITY_ID], rows[CHOSEN_BY], strict=True))
    ids = entities.table[ENTITY_ID].to_numpy()[queries]
    return np.array([[(entity, chooser) in chosen for chooser in choosers] for entity in ids], dtype=bool)


def fit_ranker(
    rows: pd.DataFrame, entities: _Entities, cutoff: pd.Timestamp, config: LookalikeConfig, columns: list[int]
) -> tuple[Pipeline, int]:
    """Logistic regression on the pair features `columns`, fitted on rolling origins before the
    cutoff (see the module docstring). Returns the pipeline and the number of training pairs."""
    before = entities.table.index[entities.table[DATE] < cutoff].to_numpy()
    chunks = np.array_split(before, config.folds)
    features, labels = [], []
    for chunk in chunks[1:]:
        if chunk.size == 0:
            continue
        origin = entities.table[DATE].iloc[chunk[0]]
        history = rows[rows[DATE] < origin]
        queries = chunk[entities.table[DATE].to_numpy()[chunk] >= origin]
        if history.empty or queries.size == 0:
            continue
        choosers, pairs = pair_features(entities, history, queries, config)
        relevant = _labels(rows, entities, queries, choosers)
        scorable = relevant.any(axis=1)
        features.append(pairs[scorable][:, :, columns].reshape(-1, len(columns)))
        labels.append(relevant[scorable].reshape(-1))
    if not features or not np.concatenate(labels).any():
        raise ValueError(f"no entity before the cutoff {cutoff.date()} was chosen by a chooser profiled before it")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=config.regularisation, max_iter=1000))
    model.fit(np.concatenate(features), np.concatenate(labels))
    return model, int(sum(len(part) for part in labels))


def _mean_with_interval(name: str, values: np.ndarray, config: LookalikeConfig) -> dict[str, float]:
    """`name`: the mean of per-entity `values`, with its bootstrap interval over entities."""

    def mean(rows: np.ndarray) -> float:
        return float(values[rows].mean())

    low, high = bootstrap_interval(mean, np.arange(values.size), resamples=config.bootstrap_resamples, seed=config.seed)
    return {name: float(values.mean()), f"{name}_low": low, f"{name}_high": high}


def _summary(hits: dict[str, np.ndarray], config: LookalikeConfig) -> dict[str, float]:
    summary: dict[str, float] = {}
    for name, values in hits.items():
        summary |= _mean_with_interval(name, values, config)
    return summary


def evaluate_lookalike_rows(
    rows: pd.DataFrame,
    cutoff: str,
    encoder: Encoder,
    config: LookalikeConfig = LookalikeConfig(),
    progress: Progress = SILENT,
) -> dict[str, Any]:
    """Every system's top_1, top_5 and mrr on the entities dated on or after `cutoff` (rows as
    from `read_lookalike`), with bootstrap intervals; see the module docstring."""
    cut = pd.Timestamp(cutoff)
    history = rows[rows[DATE] < cut]
    if history.empty:
        raise ValueError(f"no rows before the cutoff {cutoff}: no chooser can be profiled")
    progress.step(f"embedding {rows[ENTITY_ID].nunique()} entities with {encoder.name}")
    entities = _entities(rows, cut, encoder)
    candidates = set(history[CHOSEN_BY])
    after = entities.table.index[entities.table[DATE] >= cut].to_numpy()
    progress.step("profiling choosers and scoring test entities")
    choosers, pairs = pair_features(entities, history, after, config)
    relevant = _labels(rows, entities, after, choosers)
    scorable = relevant.any(axis=1)
    if not scorable.any():
        raise ValueError(f"no entity on or after {cutoff} was chosen by a chooser seen before it")
    pairs, relevant = pairs[scorable], relevant[scorable]
    all_columns = list(range(len(PAIR_FEATURES)))
    without_popularity = [i for i, name in enumerate(PAIR_FEATURES) if name not in POPULARITY_FEATURES]
    progress.step("fitting the fit ranker on rolling origins before the cutoff")
    ranker, training_pairs = fit_ranker(rows, entities, cut, config, all_columns)
    ranker_without, _ = fit_ranker(rows, entities, cut, config, without_popularity)
    flat = pairs.reshape(-1, len(PAIR_FEATURES))
    scores = {
        "model": ranker.decision_function(flat).reshape(relevant.shape),
        "model_without_popularity": ranker_without.decision_function(flat[:, without_popularity]).reshape(
            relevant.shape
        ),
        "popularity": pairs[:, :, FEATURE_INDEX["log_portfolio"]],
        "tfidf_centroid": pairs[:, :, FEATURE_INDEX["tfidf_similarity"]],
    }
    hits = {name: ranking_hits(first_relevant_ranks(value, relevant, config.seed)) for name, value in scores.items()}
    results: dict[str, Any] = {name: _summary(per_entity, config) for name, per_entity in hits.items()}
    for baseline in BASELINES:
        results[f"model_minus_{baseline}"] = _summary(
            {metric: hits["model"][metric] - hits[baseline][metric] for metric in hits["model"]}, config
        )
    coefficients = ranker[-1].coef_[0]
    results["model_coefficients"] = dict(zip(PAIR_FEATURES, coefficients.tolist(), strict=True))
    results["rows"] = {
        "test_entities": int(scorable.sum()),
        "test_entities_without_profiled_chooser": int((~scorable).sum()),
        "candidates": len(choosers),
        "history_rows": len(history),
        "history_choosers": len(candidates),
        "training_pairs": training_pairs,
    }
    return results


def evaluate_lookalike(
    path: Path,
    cutoff: str,
    config: LookalikeConfig = LookalikeConfig(),
    cache_dir: Path | None = None,
    progress: Progress = SILENT,
) -> dict[str, Any]:
    """`evaluate_lookalike_rows` on a lookalike CSV, embedding with `config.encoder`."""
    rows = read_lookalike(path)
    return evaluate_lookalike_rows(rows, cutoff, make_encoder(config.encoder, cache_dir), config, progress)
