"""Score -> probability maps shared by every model: Platt (logistic), isotonic, or none.

A calibrator is plain data (a method name and a few numbers), so a bundle stores it as JSON and no
pickle of a class ties a bundle to a module path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

CalibrationMethod = Literal["platt", "isotonic", "none"]
CALIBRATION_METHODS: tuple[CalibrationMethod, ...] = ("platt", "isotonic", "none")


@dataclass(frozen=True)
class Calibrator:
    """A fitted monotone map from a raw score to a probability in [0, 1].

    - `platt`: 1 / (1 + exp(-(slope * score + intercept))); strictly monotone, keeps the ranking.
    - `isotonic`: piecewise-linear through (`knots_x`, `knots_y`), clipped at both ends.
    - `none`: the score already is a probability (clipped to [0, 1]).
    """

    method: CalibrationMethod
    slope: float = 1.0
    intercept: float = 0.0
    knots_x: tuple[float, ...] = field(default=())
    knots_y: tuple[float, ...] = field(default=())

    def predict(self, scores: np.ndarray) -> np.ndarray:
        """(n,) raw scores -> (n,) float64 probabilities in [0, 1]."""
        values = np.asarray(scores, dtype=np.float64)
        if self.method == "platt":
            # The logistic map itself: sklearn's predict_proba input checks cost ~1 ms per routing request.
            return np.asarray(1.0 / (1.0 + np.exp(-(self.slope * values + self.intercept))))
        if self.method == "isotonic":
            return np.interp(values, np.asarray(self.knots_x), np.asarray(self.knots_y))
        return np.clip(values, 0.0, 1.0)

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


def fit_calibrator(method: CalibrationMethod, scores: np.ndarray, labels: np.ndarray) -> Calibrator:
    """Fit `method` on (n,) raw scores and (n,) 0/1 labels."""
    values = np.asarray(scores, dtype=np.float64)
    if method == "platt":
        logistic = LogisticRegression(C=1e6, max_iter=1000).fit(values.reshape(-1, 1), labels)
        return Calibrator("platt", slope=float(logistic.coef_[0, 0]), intercept=float(logistic.intercept_[0]))
    if method == "isotonic":
        isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(values, labels)
        return Calibrator(
            "isotonic",
            knots_x=tuple(float(value) for value in isotonic.X_thresholds_),
            knots_y=tuple(float(value) for value in isotonic.y_thresholds_),
        )
    return Calibrator("none")
