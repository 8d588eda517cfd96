"""Score -> probability maps shared by every model: Platt (logistic), isotonic, or none, and the
cross-validated choice between them.

A raw score is a log-odds margin (LightGBM's `raw_score`; any real-valued score works for Platt and
isotonic). A calibrator is plain data (a method name and a few numbers), so a bundle stores it as
JSON and no pickle of a class ties a bundle to a module path.

`select_calibrator(..., "auto")` scores each method by out-of-fold log-loss over K folds of the
calibration rows (grouped, so the rows of one deal never straddle a fold), keeps the simplest within
one standard error of the best and fits it on all of them. Test rows never take part in the choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

CalibrationMethod = Literal["platt", "isotonic", "none"]
CALIBRATION_METHODS: tuple[CalibrationMethod, ...] = ("platt", "isotonic", "none")
SIMPLEST_FIRST: tuple[CalibrationMethod, ...] = ("none", "platt", "isotonic")  # 0, 2, one per step parameters
CalibrationChoice = Literal["auto", "platt", "isotonic", "none"]  # "auto": chosen by cross-validation
CALIBRATION_FOLDS = 5
# Pseudo-rows at the base rate added to each isotonic step: plain isotonic regression gives steps of
# exactly 0 or 1 wherever a score range held one class only, and on new data such a step costs ~14
# nats of log-loss per surprise.
ISOTONIC_PRIOR_ROWS = 2.0
PROBABILITY_EPSILON = 1e-6  # log-loss clips probabilities to [eps, 1 - eps]


@dataclass(frozen=True)
class Calibrator:
    """A fitted monotone map from a raw score to a probability in [0, 1].

    - `platt`: 1 / (1 + exp(-(slope * score + intercept))); strictly monotone, keeps the ranking.
    - `isotonic`: piecewise-linear through (`knots_x`, `knots_y`), clipped at both ends; non-decreasing,
      so scores on one step tie.
    - `none`: the score already is log-odds: the logistic function alone (Platt with slope 1, intercept 0).
    """

    method: CalibrationMethod
    slope: float = 1.0
    intercept: float = 0.0
    knots_x: tuple[float, ...] = field(default=())
    knots_y: tuple[float, ...] = field(default=())

    def predict(self, scores: npt.ArrayLike) -> np.ndarray:
        """(n,) raw scores -> (n,) float64 probabilities in [0, 1]."""
        values = np.asarray(scores, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(values, np.asarray(self.knots_x), np.asarray(self.knots_y))
        # The logistic map itself: sklearn's predict_proba input checks cost ~1 ms per routing request.
        return np.asarray(1.0 / (1.0 + np.exp(-(self.slope * values + self.intercept))))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "slope": self.slope,
            "intercept": self.intercept,
            "knots_x": list(self.knots_x),
            "knots_y": list(self.knots_y),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Calibrator:
        method = raw.get("method")
        if method not in CALIBRATION_METHODS:
            raise ValueError(f"unknown calibration method {method!r}; known: {list(CALIBRATION_METHODS)}")
        return cls(
            method=method,
            slope=float(raw.get("slope", 1.0)),
            intercept=float(raw.get("intercept", 0.0)),
            knots_x=tuple(float(value) for value in raw.get("knots_x", ())),
            knots_y=tuple(float(value) for value in raw.get("knots_y", ())),
        )


@dataclass(frozen=True)
class CalibrationSelection:
    """The fitted calibrator and how its method was chosen.

    `cv_log_loss`: mean out-of-fold log-loss (nats) of each candidate method over `folds` folds of
    the calibration rows; `cv_log_loss_se`: standard error of its per-row difference from the best
    method's (0 for the best). Both empty when the method was fixed by configuration.
    """

    calibrator: Calibrator
    choice: CalibrationChoice
    cv_log_loss: Mapping[str, float] = field(default_factory=dict)
    cv_log_loss_se: Mapping[str, float] = field(default_factory=dict)
    folds: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: {method, choice, folds, cv_log_loss: {method: nats}, cv_log_loss_se: {method: nats}}."""
        return {
            "method": self.calibrator.method,
            "choice": self.choice,
            "folds": self.folds,
            "cv_log_loss": dict(self.cv_log_loss),
            "cv_log_loss_se": dict(self.cv_log_loss_se),
        }


def row_log_losses(labels: npt.ArrayLike, probabilities: npt.ArrayLike) -> np.ndarray:
    """(n,) binary cross-entropy of each row in nats, >= 0; probabilities clipped to [1e-6, 1 - 1e-6]."""
    clipped = np.clip(np.asarray(probabilities, dtype=np.float64), PROBABILITY_EPSILON, 1 - PROBABILITY_EPSILON)
    return np.asarray(-np.where(np.asarray(labels).astype(int) == 1, np.log(clipped), np.log1p(-clipped)))


def log_loss(labels: npt.ArrayLike, probabilities: npt.ArrayLike) -> float:
    """Mean binary cross-entropy in nats, >= 0 (lower is better); probabilities clipped to 1e-6."""
    return float(np.mean(row_log_losses(labels, probabilities)))


def _fit_smoothed_isotonic(scores: np.ndarray, labels: np.ndarray) -> Calibrator:
    """Isotonic regression whose steps are shrunk toward the base rate by ISOTONIC_PRIOR_ROWS.

    Each step's rate becomes (positives + prior * base rate) / (rows + prior), made monotone again
    with a running maximum; the knots keep sklearn's thresholds with the shrunk rates.
    """
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(scores, labels)
    step_rates, step_index = np.unique(isotonic.predict(scores), return_inverse=True)
    step_rows = np.bincount(step_index, minlength=step_rates.size)
    base_rate = float(np.mean(labels))
    smoothed = (step_rates * step_rows + ISOTONIC_PRIOR_ROWS * base_rate) / (step_rows + ISOTONIC_PRIOR_ROWS)
    smoothed = np.maximum.accumulate(smoothed)
    return Calibrator(
        "isotonic",
        knots_x=tuple(float(value) for value in isotonic.X_thresholds_),
        knots_y=tuple(float(value) for value in np.interp(isotonic.y_thresholds_, step_rates, smoothed)),
    )


def fit_calibrator(method: CalibrationMethod, scores: npt.ArrayLike, labels: npt.ArrayLike) -> Calibrator:
    """Fit `method` on (n,) raw scores and (n,) 0/1 labels."""
    values = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(labels).astype(int)
    if method == "platt":
        logistic = LogisticRegression(C=1e6, max_iter=1000).fit(values.reshape(-1, 1), targets)
        return Calibrator("platt", slope=float(logistic.coef_[0, 0]), intercept=float(logistic.intercept_[0]))
    if method == "isotonic":
        return _fit_smoothed_isotonic(values, targets)
    return Calibrator("none")


def calibration_folds(
    labels: np.ndarray, groups: np.ndarray | None, folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(fit rows, held-out rows) per fold, stratified by label and, with `groups`, grouped."""
    minority = int(min(labels.sum(), labels.size - labels.sum()))
    group_count = labels.size if groups is None else np.unique(groups).size
    count = min(folds, minority, group_count)
    if count < 2:
        raise ValueError(
            f"choosing a calibration needs 2 folds with both classes: {minority} rows of the rarer class, "
            f"{group_count} groups"
        )
    if groups is None:
        splitter = StratifiedKFold(n_splits=count, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(labels.size), labels))
    grouped = StratifiedGroupKFold(n_splits=count, shuffle=True, random_state=seed)
    return list(grouped.split(np.zeros(labels.size), labels, groups))


def out_of_fold_losses(
    method: CalibrationMethod, scores: np.ndarray, labels: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """(n,) log-loss (nats) of each row under `method` fitted on the other folds only."""
    calibrated = np.empty(labels.size, dtype=np.float64)
    for fit_rows, held_rows in folds:
        calibrated[held_rows] = fit_calibrator(method, scores[fit_rows], labels[fit_rows]).predict(scores[held_rows])
    return row_log_losses(labels, calibrated)


def select_calibrator(
    choice: CalibrationChoice,
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    groups: npt.ArrayLike | None = None,
    folds: int = CALIBRATION_FOLDS,
    seed: int = 0,
) -> CalibrationSelection:
    """The calibrator for (n,) raw log-odds scores and (n,) 0/1 labels.

    A fixed `choice` is fitted on all rows. `"auto"` scores every method by out-of-fold log-loss
    over `folds` stratified folds (grouped by (n,) `groups`, e.g. deal ids, when given; fewer folds
    when the rarer class or the groups are scarce), then fits on all rows the simplest method
    (order: none, platt, isotonic) within one standard error of the best: a more flexible map must
    beat a simpler one by more than the fold noise, or it is fitting noise that a new window will not
    share. Raises ValueError when "auto" cannot form two folds holding both classes.
    """
    values = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(labels).astype(int)
    if choice != "auto":
        return CalibrationSelection(calibrator=fit_calibrator(choice, values, targets), choice=choice)
    splits = calibration_folds(targets, None if groups is None else np.asarray(groups), folds, seed)
    losses = {method: out_of_fold_losses(method, values, targets, splits) for method in CALIBRATION_METHODS}
    best = min(CALIBRATION_METHODS, key=lambda method: float(losses[method].mean()))
    # Standard error of each method's paired per-row loss difference from the best method.
    standard_errors: dict[str, float] = {
        method: float(np.std(losses[method] - losses[best], ddof=1) / np.sqrt(targets.size))
        for method in CALIBRATION_METHODS
    }
    chosen = next(
        method for method in SIMPLEST_FIRST if losses[method].mean() <= losses[best].mean() + standard_errors[method]
    )
    return CalibrationSelection(
        calibrator=fit_calibrator(chosen, values, targets),
        choice=choice,
        cv_log_loss={method: float(loss.mean()) for method, loss in losses.items()},
        cv_log_loss_se=standard_errors,
        folds=len(splits),
    )
