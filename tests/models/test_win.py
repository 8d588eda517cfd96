"""The win model's contract beyond training: array input, the calibrator's closed form, explanations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from features.pairs import FEATURE_COLUMNS, FEATURE_REASONS, MONOTONE_DIRECTIONS
from models.calibration import fit_calibrator
from models.win import WinModel
from training.config import WinModelConfig
from training.win_model import PairFrame, WinModelTrainer


def pair_frame(rows: int, seed: int) -> PairFrame:
    """Random features whose win odds rise with the first two columns."""
    rng = np.random.default_rng(seed)
    features = pd.DataFrame(rng.normal(size=(rows, len(FEATURE_COLUMNS))).astype(np.float32), columns=FEATURE_COLUMNS)
    logit = 1.5 * features.iloc[:, 0] - 1.0 * features.iloc[:, 1]
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return PairFrame(features, labels.to_numpy(), np.arange(rows) // 10, np.arange(rows))


@pytest.fixture(scope="module")
def model() -> WinModel:
    config = WinModelConfig(n_estimators=40, min_child_samples=20)
    return WinModelTrainer(config).fit(pair_frame(3000, seed=0), pair_frame(1000, seed=1)).model_


def test_trainer_records_its_calibration_choice_and_constraints() -> None:
    trainer = WinModelTrainer(WinModelConfig(n_estimators=20)).fit(pair_frame(2000, seed=6), pair_frame(1000, seed=7))
    assert trainer.calibration_.choice == "auto"
    assert set(trainer.calibration_.cv_log_loss) == {"platt", "isotonic", "none"}
    assert trainer.model_.calibrator == trainer.calibration_.calibrator
    constraints = trainer.model_.booster.params["monotone_constraints"]
    assert dict(zip(FEATURE_COLUMNS, constraints, strict=True)) == {
        name: MONOTONE_DIRECTIONS.get(name, 0) for name in FEATURE_COLUMNS
    }


def test_array_and_frame_inputs_agree(model: WinModel) -> None:
    frame = pair_frame(50, seed=2).features
    shuffled = frame[list(reversed(FEATURE_COLUMNS))]  # a frame is read by column name
    expected = model.predict_win_probability(shuffled)
    np.testing.assert_array_equal(model.predict_win_probability(frame.to_numpy()), expected)
    assert model.explain(frame.to_numpy()) == model.explain(shuffled)


def test_wrong_array_shape_is_refused(model: WinModel) -> None:
    with pytest.raises(ValueError, match=r"\(n, 18\)"):
        model.predict_win_probability(np.zeros((3, 5), dtype=np.float32))


def test_saved_model_predicts_and_explains_the_same(model: WinModel, tmp_path: Path) -> None:
    features = pair_frame(30, seed=4).features
    model.save(tmp_path)
    loaded = WinModel.load(tmp_path)
    np.testing.assert_allclose(loaded.predict_win_probability(features), model.predict_win_probability(features))
    assert loaded.explain(features) == model.explain(features)
    assert loaded.calibrator == model.calibrator


def test_platt_calibrator_is_the_logistic_fit() -> None:
    rng = np.random.default_rng(5)
    scores = rng.normal(size=2000)
    labels = (rng.random(2000) < 1 / (1 + np.exp(-(0.7 * scores - 0.3)))).astype(int)
    calibrator = fit_calibrator("platt", scores, labels)
    grid = np.linspace(-4, 4, 33)
    sklearn_map = (
        LogisticRegression(C=1e6, max_iter=1000)
        .fit(scores.reshape(-1, 1), labels)
        .predict_proba(grid.reshape(-1, 1))[:, 1]
    )
    np.testing.assert_allclose(calibrator.predict(grid), sklearn_map, rtol=1e-9)


def test_reasons_are_the_largest_contributions(model: WinModel) -> None:
    features = pair_frame(20, seed=3).features.to_numpy()
    contributions = np.asarray(model.booster.predict(features, pred_contrib=True))
    # TreeSHAP is locally accurate: contributions plus the bias column add up to the raw score.
    np.testing.assert_allclose(contributions.sum(axis=1), model.raw_score(features), rtol=1e-5, atol=1e-6)
    for row, reasons in zip(contributions[:, :-1], model.explain(features, top_k=3), strict=True):
        assert [reason.feature for reason in reasons] == [FEATURE_COLUMNS[i] for i in np.argsort(-np.abs(row))[:3]]
        for reason in reasons:
            assert reason.text == FEATURE_REASONS[reason.feature][0 if reason.contribution >= 0 else 1]
    # The planted signal leads: the first column is the top reason for most rows.
    top = [reasons[0].feature for reasons in model.explain(features, top_k=1)]
    assert top.count(FEATURE_COLUMNS[0]) >= 10
