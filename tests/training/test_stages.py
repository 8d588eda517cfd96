"""The training stages called one by one on a smoke-sized ecosystem (hashing encoder, no MLflow):
embed -> build dataset -> split -> fit -> evaluate, and the promotion rule."""

from __future__ import annotations

from dataclasses import asdict
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest

from features.embed import HashingEncoder
from features.pairs import FEATURE_COLUMNS
from features.schema import Ecosystem
from features.synthetic import EcosystemConfig, GroundTruth, generate_ecosystem
from training.config import SplitConfig, TrainConfig, WinModelConfig, config_from_params
from training.stages import (
    SPLITS,
    ChampionScore,
    Embeddings,
    Evaluation,
    FittedModels,
    PairDataset,
    TimeSplits,
    build_dataset,
    decide_promotion,
    embed_ecosystem,
    evaluate_fitted,
    fit_models,
    time_split,
)
from training.win_model import PairFrame, WinModelTrainer

SMOKE = EcosystemConfig(partners=60, deals=600, seed=3)
CONFIG = TrainConfig(ecosystem=SMOKE, encoder="hashing-16", model=WinModelConfig(n_estimators=20))
BASELINES = ("random", "partner_win_rate", "embedding_cosine", "logistic_regression")
METRICS = {"roc_auc", "log_loss", "ece", "rows"}
RANKING_METRICS = {"ndcg_at_1", "ndcg_at_5", "ndcg_at_10", "hit_at_1"}


class Staged(NamedTuple):
    ecosystem: Ecosystem
    truth: GroundTruth
    embeddings: Embeddings
    dataset: PairDataset
    splits: TimeSplits
    fitted: FittedModels
    evaluation: Evaluation


@pytest.fixture(scope="module")
def staged() -> Staged:
    ecosystem, truth = generate_ecosystem(SMOKE)
    embeddings = embed_ecosystem(ecosystem, HashingEncoder(16))
    dataset = build_dataset(ecosystem, embeddings)
    splits = time_split(dataset, CONFIG.split)
    fitted = fit_models(CONFIG.model, splits)
    evaluation = evaluate_fitted(fitted, splits, dataset, ecosystem, truth, CONFIG.evaluation)
    return Staged(ecosystem, truth, embeddings, dataset, splits, fitted, evaluation)


def test_embed_gives_one_unit_vector_per_partner_and_deal(staged: Staged) -> None:
    embeddings = staged.embeddings
    assert embeddings.encoder == "hashing-16"
    assert embeddings.partner_vectors.shape == (SMOKE.partners, 16)
    assert embeddings.deal_vectors.shape == (SMOKE.deals, 16)
    np.testing.assert_allclose(np.linalg.norm(embeddings.deal_vectors, axis=1), 1.0, atol=1e-5)


def test_dataset_has_one_row_per_attempt_in_time_order(staged: Staged) -> None:
    rows = staged.dataset.rows
    assert len(rows) == len(staged.ecosystem.outcomes)
    assert list(rows.features.columns) == list(FEATURE_COLUMNS)
    assert np.all(np.diff(staged.dataset.row_seconds) >= 0)
    assert sorted(rows.source_rows.tolist()) == list(range(len(staged.ecosystem.outcomes)))


def test_splits_are_time_ordered_and_disjoint_by_deal(staged: Staged) -> None:
    windows = staged.splits.windows()
    assert tuple(windows) == SPLITS
    assert sum(len(frame) for frame in windows.values()) == len(staged.dataset.rows)
    deals = [set(frame.group_ids.tolist()) for frame in windows.values()]
    for earlier in range(len(deals)):
        for later in range(earlier + 1, len(deals)):
            assert not deals[earlier] & deals[later], (SPLITS[earlier], SPLITS[later])
    seconds = staged.dataset.deals.created_seconds
    for (name, frame), (next_name, next_frame) in zip(list(windows.items()), list(windows.items())[1:], strict=False):
        assert seconds[frame.group_ids].max() <= seconds[next_frame.group_ids].min(), (name, next_name)
    assert np.all(np.diff(staged.splits.boundaries) >= 0)
    assert staged.splits.row_counts() == {name: len(frame) for name, frame in windows.items()}


def test_a_split_without_both_outcomes_is_refused(staged: Staged) -> None:
    with pytest.raises(ValueError, match="window has no rows of both outcomes"):
        time_split(staged.dataset, SplitConfig(calibration_share=0.0005))


def test_fit_returns_the_model_and_every_baseline(staged: Staged) -> None:
    fitted = staged.fitted
    assert isinstance(fitted.model, WinModelTrainer)
    assert fitted.model.model_.feature_names == FEATURE_COLUMNS
    assert [model.name for model in fitted.all] == ["model", *BASELINES]
    for model in fitted.all:
        probabilities = model.predict_win_probability(staged.splits.test.features)
        assert probabilities.shape == (len(staged.splits.test),)
        assert np.all((probabilities >= 0) & (probabilities <= 1)), model.name


def test_evaluate_keys_match_the_json_contract(staged: Staged) -> None:
    metrics = staged.evaluation.metrics
    assert set(metrics) == {"model", *BASELINES, "oracle", "rows", "calibration"}
    for name in ("model", *BASELINES, "oracle"):
        assert set(metrics[name]) == METRICS | RANKING_METRICS, name
    assert metrics["oracle"]["ndcg_at_10"] == pytest.approx(1.0)
    assert metrics["rows"] == staged.splits.row_counts() | {
        "slate_deals": metrics["rows"]["slate_deals"],
        "slate_rows": metrics["rows"]["slate_rows"],
    }
    assert metrics["rows"]["slate_deals"] > 0
    assert set(staged.evaluation.validation) == {"model", *BASELINES}
    assert staged.evaluation.validation["model"]["rows"] == len(staged.splits.validation)


def test_evaluate_without_ground_truth_has_no_oracle_or_slates(staged: Staged) -> None:
    evaluation = evaluate_fitted(
        staged.fitted, staged.splits, staged.dataset, staged.ecosystem, None, CONFIG.evaluation
    )
    assert evaluation.slates is None
    assert set(evaluation.metrics) == {"model", *BASELINES, "rows", "calibration"}
    assert set(evaluation.metrics["model"]) == METRICS
    assert evaluation.metrics["rows"] == staged.splits.row_counts()


def test_take_selects_by_mask_positions_or_slice() -> None:
    frame = PairFrame(
        features=pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]}, index=[10, 11, 12, 13]),
        labels=np.array([0, 1, 0, 1]),
        group_ids=np.array([0, 0, 1, 1]),
        source_rows=np.array([3, 2, 1, 0]),
    )
    by_mask = frame.take(np.array([False, True, False, True]))
    by_positions = frame.take(np.array([1, 3]))
    by_slice = frame.take(slice(1, None, 2))
    for part in (by_mask, by_positions, by_slice):
        assert part.features["a"].tolist() == [1.0, 3.0]
        assert list(part.features.index) == [0, 1]
        assert part.labels.tolist() == [1, 1] and part.group_ids.tolist() == [0, 1]
        assert part.source_rows.tolist() == [2, 0]
    extended = frame.with_feature("b", np.array([30.0, 20.0, 10.0, 0.0]))
    assert extended.features["b"].tolist() == [0.0, 10.0, 20.0, 30.0]
    assert extended.features["b"].dtype == np.float32 and "b" not in frame.features


def test_model_config_reads_back_from_logged_params() -> None:
    config = WinModelConfig(objective="lambdarank", n_estimators=7, learning_rate=0.05, calibration="isotonic")
    params = {f"model_{key}": str(value) for key, value in asdict(config).items()}  # as Run.log_params logs it
    assert config_from_params(WinModelConfig(), params, "model_") == config
    del params["model_num_leaves"]
    with pytest.raises(ValueError, match="model_num_leaves"):
        config_from_params(WinModelConfig(), params, "model_")


@pytest.mark.parametrize(
    ("metric", "new_score", "champion", "promoted", "words"),
    [
        ("log_loss", 0.5, None, True, "no champion was registered"),
        ("log_loss", 0.4, ChampionScore("3", 0.5, "scored by its own bundle"), True, "promoted to champion"),
        ("log_loss", 0.5, ChampionScore("3", 0.5, "scored by its own bundle"), False, "not better"),
        ("log_loss", 0.6, ChampionScore("3", 0.5, "scored by its own bundle"), False, "kept as challenger"),
        ("roc_auc", 0.8, ChampionScore("3", 0.7, "scored by its own bundle"), True, "promoted to champion"),
        ("roc_auc", 0.6, ChampionScore("3", 0.7, "scored by its own bundle"), False, "not better"),
        ("log_loss", 0.1, ChampionScore("3", None, "it needs features this data lacks"), False, "not compared"),
    ],
    ids=["no-champion", "better", "tie", "worse", "higher-better", "higher-worse", "incompatible"],
)
def test_promotion_decision(
    metric: str, new_score: float, champion: ChampionScore | None, promoted: bool, words: str
) -> None:
    decided, decision = decide_promotion(metric, new_score, champion)
    assert decided is promoted
    assert words in decision
    if champion is not None:
        assert f"champion v{champion.version}" in decision and champion.basis in decision
