"""models.calibration: the three maps and the cross-validated choice between them."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from models.calibration import (
    CALIBRATION_METHODS,
    Calibrator,
    calibration_folds,
    fit_calibrator,
    log_loss,
    select_calibrator,
)


def logistic(values: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-values)))


def draw(probabilities: np.ndarray, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(probabilities.size) < probabilities).astype(int)


def test_none_is_the_logistic_of_a_log_odds_score() -> None:
    scores = np.linspace(-5, 5, 11)
    np.testing.assert_allclose(Calibrator("none").predict(scores), logistic(scores))


def test_isotonic_is_monotone_never_certain_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=3000)
    labels = draw(logistic(2 * scores), seed=1)
    calibrator = fit_calibrator("isotonic", scores, labels)
    grid = np.linspace(-6, 6, 500)
    probabilities = calibrator.predict(grid)
    assert np.all(np.diff(probabilities) >= 0)
    # Steps are shrunk toward the base rate: no step says 0 or 1 (each would cost ~14 nats on a surprise).
    assert probabilities.min() > 0.0 and probabilities.max() < 1.0
    assert Calibrator.from_dict(calibrator.to_dict()) == calibrator
    with pytest.raises(ValueError, match="unknown calibration method"):
        Calibrator.from_dict({"method": "sigmoid"})


@pytest.mark.parametrize(
    ("true_log_odds", "expected"),
    [
        (lambda scores: scores, "none"),  # already calibrated: the simplest map is kept
        (lambda scores: 0.4 * scores - 1.0, "platt"),  # over-confident and shifted: a logistic refit
        (lambda scores: np.where(scores > 0, 2.0, -2.0), "isotonic"),  # a step no logistic curve follows
    ],
    ids=["calibrated", "overconfident", "step"],
)
def test_auto_picks_the_method_the_data_needs(true_log_odds: Callable[[np.ndarray], np.ndarray], expected: str) -> None:
    scores = np.random.default_rng(2).normal(0, 2, 6000)
    labels = draw(logistic(true_log_odds(scores)), seed=3)
    selection = select_calibrator("auto", scores, labels, groups=np.arange(scores.size) // 5)
    assert selection.calibrator.method == expected
    assert selection.choice == "auto" and selection.folds == 5
    assert set(selection.cv_log_loss) == set(CALIBRATION_METHODS) == set(selection.cv_log_loss_se)
    best = min(selection.cv_log_loss.values())
    assert selection.cv_log_loss[expected] <= best + selection.cv_log_loss_se[expected]
    assert selection.to_dict()["method"] == expected


def test_a_fixed_method_is_fitted_without_cross_validation() -> None:
    scores = np.random.default_rng(4).normal(size=500)
    selection = select_calibrator("platt", scores, draw(logistic(scores), seed=5))
    assert selection.calibrator.method == "platt"
    assert selection.cv_log_loss == {} and selection.folds == 0


def test_folds_keep_each_group_whole_and_both_classes_in_each() -> None:
    labels = draw(np.full(400, 0.3), seed=6)
    groups = np.arange(400) // 8
    folds = calibration_folds(labels, groups, folds=5, seed=0)
    assert len(folds) == 5
    held_groups = [set(groups[held].tolist()) for _, held in folds]
    assert sum(len(held) for held in held_groups) == 50  # every group is held out exactly once
    for fit_rows, held_rows in folds:
        assert not set(groups[fit_rows].tolist()) & set(groups[held_rows].tolist())
        assert set(labels[held_rows].tolist()) == {0, 1}


def test_auto_needs_two_rows_of_each_class() -> None:
    with pytest.raises(ValueError, match="1 rows of the rarer class"):
        select_calibrator("auto", np.arange(10.0), np.r_[np.zeros(9), 1])


def test_log_loss_clips_certain_mistakes() -> None:
    assert log_loss([1, 0], [0.5, 0.5]) == pytest.approx(np.log(2))
    assert log_loss([1], [0.0]) == pytest.approx(-np.log(1e-6))
