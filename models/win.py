"""The inference half of the win model: a fitted LightGBM booster plus its calibrator.

`training.win_model` fits it; routing and the MLflow pyfunc only predict and explain. Saved as
LightGBM's own text format and a JSON calibrator, so a bundle never unpickles project classes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.pairs import FEATURE_REASONS
from models.calibration import Calibrator

BOOSTER_FILE = "win_booster.txt"
CALIBRATOR_FILE = "win_calibrator.json"
# Below this many rows a prediction runs on one thread: a request scores a few hundred pairs in
# ~0.1 ms alone, while waking OpenMP's team on a busy 2-core machine cost 50-60 ms (measured).
SINGLE_THREAD_ROWS = 10_000


def _predict_threads(rows: int) -> int:
    """LightGBM predict threads for `rows` rows: one for small batches, else 0 (OpenMP's default)."""
    return 1 if rows < SINGLE_THREAD_ROWS else 0


@dataclass(frozen=True)
class Reason:
    feature: str
    contribution: float  # log-odds contribution of this feature for this partner
    text: str


@dataclass(frozen=True)
class WinModel:
    """Calibrated win probability of a (deal, partner) pair from its point-in-time features."""

    booster: lgb.Booster  # holds exactly the trees to use (the best iteration when it was saved)
    calibrator: Calibrator
    feature_names: tuple[str, ...]
    # Wording of each feature (raises, lowers); the team model (`models.team`) brings its own.
    reasons: Mapping[str, tuple[str, str]] = field(default_factory=lambda: FEATURE_REASONS)

    def _matrix(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """A frame (columns selected by name) or an (n, F) array already in `feature_names` order."""
        if isinstance(features, np.ndarray):
            if features.ndim != 2 or features.shape[1] != len(self.feature_names):
                raise ValueError(f"expected an (n, {len(self.feature_names)}) feature array, got {features.shape}")
            return features
        return features[list(self.feature_names)].to_numpy(dtype=np.float32)

    def raw_score(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """(n,) uncalibrated margin (log-odds for the binary objective)."""
        matrix = self._matrix(features)
        return np.asarray(self.booster.predict(matrix, raw_score=True, num_threads=_predict_threads(len(matrix))))

    def predict_win_probability(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """(n,) calibrated probability in [0, 1] that the partner closes the deal."""
        return self.calibrator.predict(self.raw_score(features))

    def feature_importance(self) -> pd.Series:
        """Total split gain per feature, descending."""
        gains = self.booster.feature_importance(importance_type="gain")
        return pd.Series(gains, index=list(self.feature_names)).sort_values(ascending=False)

    def contributions(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """(n, F) TreeSHAP log-odds contribution of each feature (the bias column dropped)."""
        matrix = self._matrix(features)
        return np.asarray(self.booster.predict(matrix, pred_contrib=True, num_threads=_predict_threads(len(matrix))))[
            :, :-1
        ]

    def explain(self, features: pd.DataFrame | np.ndarray, top_k: int = 3) -> list[list[Reason]]:
        """Top `top_k` reasons per row from TreeSHAP contributions. TreeSHAP costs far more per row
        than a prediction (10 rows cost about twice a 200-row predict with the default model): explain
        only the rows you return."""
        return top_reasons(self.contributions(features), self.feature_names, self.reasons, top_k)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / BOOSTER_FILE).write_text(self.booster.model_to_string())
        payload = {"feature_names": list(self.feature_names), "calibrator": self.calibrator.to_dict()}
        (directory / CALIBRATOR_FILE).write_text(json.dumps(payload, indent=2))

    @classmethod
    def load(cls, directory: Path, reasons: Mapping[str, tuple[str, str]] = FEATURE_REASONS) -> WinModel:
        payload = json.loads((directory / CALIBRATOR_FILE).read_text())
        return cls(
            booster=lgb.Booster(model_str=(directory / BOOSTER_FILE).read_text()),
            calibrator=Calibrator.from_dict(payload["calibrator"]),
            feature_names=tuple(payload["feature_names"]),
            reasons=reasons,
        )


def top_reasons(
    contributions: np.ndarray,
    feature_names: Sequence[str],
    reasons: Mapping[str, tuple[str, str]],
    top_k: int,
) -> list[list[Reason]]:
    """Per row of (n, F) log-odds `contributions`: the `top_k` largest in size, worded by `reasons`
    (feature -> (raises, lowers))."""
    explained: list[list[Reason]] = []
    for row in contributions:
        order = np.argsort(-np.abs(row))[:top_k]
        explained.append(
            [
                Reason(
                    feature=feature_names[index],
                    contribution=float(row[index]),
                    text=reasons[feature_names[index]][0 if row[index] >= 0 else 1],
                )
                for index in order
            ]
        )
    return explained
