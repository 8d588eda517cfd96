"""LightGBM win probability with calibration, plus the baselines it is always reported beside.

Every model here follows one small contract (scikit-learn spirit: `__init__` stores parameters,
`fit` returns self, learned state ends in `_`):

    fit(train: PairFrame, calibration: PairFrame) -> self
    predict_win_probability(features) -> (n,) float64 in [0, 1]

`PairFrame` carries features, labels and deal group ids; the calibration frame is later in time
than the training frame (early stopping + probability calibration).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from features.pairs import EMBEDDING_SIMILARITY, FEATURE_COLUMNS, FEATURE_REASONS, WIN_RATE_OVERALL
from training.config import WinModelConfig


@dataclass(frozen=True)
class PairFrame:
    """Rows of (deal, partner) features. Rows of one deal are contiguous (lambdarank needs it)."""

    features: pd.DataFrame  # (n, F) float32, columns FEATURE_COLUMNS
    labels: np.ndarray  # (n,) int 0/1 won
    group_ids: np.ndarray  # (n,) int deal row
    source_rows: np.ndarray  # (n,) int row of each pair in its source table (outcomes)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Reason:
    feature: str
    contribution: float  # log-odds contribution of this feature for this partner
    text: str


class WinProbabilityModel(Protocol):
    name: str

    def fit(self, train: PairFrame, calibration: PairFrame) -> WinProbabilityModel: ...

    def predict_win_probability(self, features: pd.DataFrame) -> np.ndarray: ...


class _PlattCalibrator:
    """Logistic map from a raw score to a probability (strictly monotone: keeps the ranking)."""

    def __init__(self) -> None:
        self.model_ = LogisticRegression(C=1e6, max_iter=1000)

    def fit(self, scores: np.ndarray, labels: np.ndarray) -> _PlattCalibrator:
        self.model_.fit(scores.reshape(-1, 1), labels)
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        # The logistic map itself: predict_proba's input checks cost ~1 ms, a routing request's whole scoring budget.
        slope, intercept = float(self.model_.coef_[0, 0]), float(self.model_.intercept_[0])
        return np.asarray(1.0 / (1.0 + np.exp(-(slope * np.asarray(scores, dtype=np.float64) + intercept))))


def _calibrator(kind: str, scores: np.ndarray, labels: np.ndarray) -> _PlattCalibrator | IsotonicRegression:
    if kind == "isotonic":
        return IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(scores, labels)
    return _PlattCalibrator().fit(scores, labels)


class WinModel:
    """LightGBM on pair features, calibrated on a later time window."""

    name = "model"

    def __init__(self, config: WinModelConfig | None = None, feature_names: tuple[str, ...] = FEATURE_COLUMNS) -> None:
        self.config = config or WinModelConfig()
        self.feature_names = feature_names

    def _params(self) -> dict[str, object]:
        config = self.config
        params: dict[str, object] = {
            "objective": config.objective,
            "learning_rate": config.learning_rate,
            "num_leaves": config.num_leaves,
            "min_data_in_leaf": config.min_child_samples,
            "feature_fraction": config.colsample_bytree,
            "bagging_fraction": config.subsample,
            "bagging_freq": 1 if config.subsample < 1 else 0,
            "lambda_l2": config.reg_lambda,
            "num_threads": config.threads,
            "seed": config.seed,
            "deterministic": True,
            "verbosity": -1,
        }
        if config.objective == "lambdarank":
            params["metric"] = "ndcg"
            params["eval_at"] = [10]
        else:
            params["metric"] = "binary_logloss"
        return params

    def _dataset(self, frame: PairFrame, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        group = np.bincount(np.unique(frame.group_ids, return_inverse=True)[1])
        return lgb.Dataset(
            frame.features[list(self.feature_names)],
            label=frame.labels,
            group=group if self.config.objective == "lambdarank" else None,
            reference=reference,
            free_raw_data=True,
        )

    def fit(self, train: PairFrame, calibration: PairFrame) -> WinModel:
        train_set = self._dataset(train)
        calibration_set = self._dataset(calibration, reference=train_set)
        self.booster_ = lgb.train(
            self._params(),
            train_set,
            num_boost_round=self.config.n_estimators,
            valid_sets=[calibration_set],
            callbacks=[lgb.early_stopping(self.config.early_stopping_rounds, verbose=False)],
        )
        self.calibrator_ = _calibrator(
            self.config.calibration, self.raw_score(calibration.features), calibration.labels
        )
        return self

    def _matrix(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """A frame (columns selected by name) or an (n, F) array already in `feature_names` order."""
        if isinstance(features, np.ndarray):
            if features.ndim != 2 or features.shape[1] != len(self.feature_names):
                raise ValueError(f"expected an (n, {len(self.feature_names)}) feature array, got {features.shape}")
            return features
        return features[list(self.feature_names)].to_numpy(dtype=np.float32)

    def raw_score(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """(n,) uncalibrated margin (log-odds for `binary`)."""
        matrix = self._matrix(features)
        return np.asarray(
            self.booster_.predict(matrix, raw_score=True, num_iteration=self.booster_.best_iteration or None)
        )

    def predict_win_probability(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """(n,) calibrated probability in [0, 1] that the partner closes the deal."""
        return np.asarray(self.calibrator_.predict(self.raw_score(features)), dtype=np.float64)

    def feature_importance(self) -> pd.Series:
        """Total split gain per feature, descending."""
        gains = self.booster_.feature_importance(importance_type="gain", iteration=self.booster_.best_iteration)
        return pd.Series(gains, index=list(self.feature_names)).sort_values(ascending=False)

    def explain(self, features: pd.DataFrame | np.ndarray, top_k: int = 3) -> list[list[Reason]]:
        """Top `top_k` reasons per row from TreeSHAP contributions. TreeSHAP costs far more per row
        than a prediction (10 rows cost about twice a 200-row predict with the default model): explain
        only the rows you return."""
        matrix = self._matrix(features)
        contributions = np.asarray(
            self.booster_.predict(matrix, pred_contrib=True, num_iteration=self.booster_.best_iteration or None)
        )[:, :-1]
        reasons: list[list[Reason]] = []
        for row in contributions:
            order = np.argsort(-np.abs(row))[:top_k]
            reasons.append(
                [
                    Reason(
                        feature=self.feature_names[index],
                        contribution=float(row[index]),
                        text=FEATURE_REASONS[self.feature_names[index]][0 if row[index] >= 0 else 1],
                    )
                    for index in order
                ]
            )
        return reasons


class RandomBaseline:
    """Random ranking at the base rate: probability = training win rate (+ a 1e-9 jitter for order)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def fit(self, train: PairFrame, calibration: PairFrame) -> RandomBaseline:
        self.base_rate_ = float(np.mean(train.labels))
        return self

    def predict_win_probability(self, features: pd.DataFrame) -> np.ndarray:
        jitter = np.random.default_rng(self.seed).random(len(features)) * 1e-9
        return np.full(len(features), self.base_rate_) + jitter


class SingleFeatureBaseline:
    """One feature as the score, Platt-calibrated on the calibration window."""

    def __init__(self, name: str, feature: str) -> None:
        self.name = name
        self.feature = feature

    def fit(self, train: PairFrame, calibration: PairFrame) -> SingleFeatureBaseline:
        scores = calibration.features[self.feature].to_numpy(dtype=float)
        self.fill_value_ = float(np.nanmedian(train.features[self.feature].to_numpy(dtype=float)))
        self.calibrator_ = _PlattCalibrator().fit(np.nan_to_num(scores, nan=self.fill_value_), calibration.labels)
        return self

    def predict_win_probability(self, features: pd.DataFrame) -> np.ndarray:
        scores = np.nan_to_num(features[self.feature].to_numpy(dtype=float), nan=self.fill_value_)
        return self.calibrator_.predict(scores)


class LogisticBaseline:
    """Logistic regression on the same features (median-imputed, standardised)."""

    name = "logistic_regression"

    def __init__(self, feature_names: tuple[str, ...] = FEATURE_COLUMNS) -> None:
        self.feature_names = feature_names

    def fit(self, train: PairFrame, calibration: PairFrame) -> LogisticBaseline:
        self.pipeline_: Pipeline = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(max_iter=1000),
        )
        self.pipeline_.fit(train.features[list(self.feature_names)].to_numpy(dtype=float), train.labels)
        return self

    def predict_win_probability(self, features: pd.DataFrame) -> np.ndarray:
        matrix = features[list(self.feature_names)].to_numpy(dtype=float)
        result: np.ndarray = self.pipeline_.predict_proba(matrix)[:, 1]
        return result


def baselines(seed: int = 0) -> list[WinProbabilityModel]:
    """The baselines every evaluation reports beside the model, by their JSON names."""
    return [
        RandomBaseline(seed=seed),
        SingleFeatureBaseline("partner_win_rate", WIN_RATE_OVERALL),
        SingleFeatureBaseline("embedding_cosine", EMBEDDING_SIMILARITY),
        LogisticBaseline(),
    ]
