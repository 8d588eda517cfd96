"""LightGBM win probability with calibration, plus the baselines it is always reported beside.

Every model here follows one small contract (scikit-learn spirit: `__init__` stores parameters,
`fit` returns self, learned state ends in `_`):

    fit(train: PairFrame, calibration: PairFrame) -> self
    predict_win_probability(features) -> (n,) float64 in [0, 1]

`PairFrame` carries features, labels and deal group ids; the calibration frame is later in time
than the training frame (early stopping + probability calibration).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features.pairs import EMBEDDING_SIMILARITY, FEATURE_COLUMNS, MONOTONE_DIRECTIONS, WIN_RATE_OVERALL
from models.calibration import CalibrationSelection, Calibrator, fit_calibrator, select_calibrator
from models.win import WinModel
from training.config import WinModelConfig

ONE_HOT_MIN_FREQUENCY = 5  # rarer categories share one "infrequent" column in logistic regression


@dataclass(frozen=True)
class PairFrame:
    """Rows of (deal, partner) features. Rows of one deal are contiguous (lambdarank needs it)."""

    features: pd.DataFrame  # (n, F) float32, columns FEATURE_COLUMNS
    labels: np.ndarray  # (n,) int 0/1 won
    group_ids: np.ndarray  # (n,) int deal row
    source_rows: np.ndarray  # (n,) int row of each pair in its source table (outcomes)

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: np.ndarray | slice) -> PairFrame:
        """The rows picked by a boolean mask, positions or a slice (features re-indexed from 0)."""
        return PairFrame(
            features=self.features.iloc[rows].reset_index(drop=True),
            labels=self.labels[rows],
            group_ids=self.group_ids[rows],
            source_rows=self.source_rows[rows],
        )

    def with_feature(self, name: str, values_by_source_row: np.ndarray) -> PairFrame:
        """A copy with one more float32 feature column; `values_by_source_row` is (N,), indexed like
        the source table (`source_rows`)."""
        column = np.asarray(values_by_source_row)[self.source_rows].astype(np.float32)
        return replace(self, features=self.features.assign(**{name: column}))


class WinProbabilityModel(Protocol):
    name: str

    def fit(self, train: PairFrame, calibration: PairFrame) -> WinProbabilityModel: ...

    def predict_win_probability(self, features: pd.DataFrame) -> np.ndarray: ...


class WinModelTrainer:
    """Fits LightGBM on pair features and calibrates it on a later time window; the fitted
    `models.win.WinModel` (what a bundle stores and routing serves) ends in `model_`, the calibration
    method and its cross-validated scores in `calibration_`.

    With `config.monotone_constraints`, the features of `features.pairs.MONOTONE_DIRECTIONS` are
    constrained: e.g. a higher certification coverage never lowers the probability.
    """

    name = "model"

    def __init__(
        self,
        config: WinModelConfig | None = None,
        feature_names: tuple[str, ...] = FEATURE_COLUMNS,
        monotone_directions: Mapping[str, int] = MONOTONE_DIRECTIONS,
    ) -> None:
        self.config = config or WinModelConfig()
        self.feature_names = feature_names
        self.monotone_directions = monotone_directions  # feature name -> +1 / -1; others free

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
        if config.monotone_constraints:
            params["monotone_constraints"] = [self.monotone_directions.get(name, 0) for name in self.feature_names]
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

    def fit(self, train: PairFrame, calibration: PairFrame) -> WinModelTrainer:
        train_set = self._dataset(train)
        calibration_set = self._dataset(calibration, reference=train_set)
        booster = lgb.train(
            self._params(),
            train_set,
            num_boost_round=self.config.n_estimators,
            valid_sets=[calibration_set],
            callbacks=[lgb.early_stopping(self.config.early_stopping_rounds, verbose=False)],
        )
        return self.calibrated(booster, booster.best_iteration, calibration)

    def calibrated(self, booster: lgb.Booster, best_iteration: int, calibration: PairFrame) -> WinModelTrainer:
        """Finish a fit: keep `booster`'s trees up to `best_iteration` (all when 0), then select and fit
        the calibration map on the calibration rows. Sets `model_` and `calibration_`; returns self."""
        # Keep only the trees up to the best iteration: what is saved, served and explained is one model.
        best = lgb.Booster(model_str=booster.model_to_string(num_iteration=best_iteration or None))
        uncalibrated = WinModel(booster=best, calibrator=Calibrator("none"), feature_names=self.feature_names)
        self.calibration_: CalibrationSelection = select_calibrator(
            self.config.calibration,
            uncalibrated.raw_score(calibration.features),
            calibration.labels,
            groups=calibration.group_ids,  # the rows of one deal share its outcome draw: one fold each
            seed=self.config.seed,
        )
        self.model_ = WinModel(booster=best, calibrator=self.calibration_.calibrator, feature_names=self.feature_names)
        return self

    def predict_win_probability(self, features: pd.DataFrame | np.ndarray) -> np.ndarray:
        """(n,) calibrated probability in [0, 1] that the partner closes the deal."""
        return self.model_.predict_win_probability(features)


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
        self.calibrator_ = fit_calibrator("platt", np.nan_to_num(scores, nan=self.fill_value_), calibration.labels)
        return self

    def predict_win_probability(self, features: pd.DataFrame) -> np.ndarray:
        scores = np.nan_to_num(features[self.feature].to_numpy(dtype=float), nan=self.fill_value_)
        return self.calibrator_.predict(scores)


def logistic_regression_pipeline(numeric: Sequence[str], categorical: Sequence[str] = ()) -> Pipeline:
    """The logistic-regression baseline of every evaluation, over named DataFrame columns.

    Numeric columns: median-imputed with missing indicators, then standardised. Categorical columns
    (str, missing spelled out): one-hot, categories rarer than ONE_HOT_MIN_FREQUENCY rows share a
    column, unseen ones get none. `predict_proba(frame)[:, 1]` is the (n,) win probability.
    """
    transforms: list[tuple[str, Any, list[str]]] = []
    if numeric:
        imputer = SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)
        transforms.append(("numeric", make_pipeline(imputer, StandardScaler()), list(numeric)))
    if categorical:
        one_hot = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=ONE_HOT_MIN_FREQUENCY)
        transforms.append(("categorical", one_hot, list(categorical)))
    return make_pipeline(ColumnTransformer(transforms), LogisticRegression(max_iter=5000))


class LogisticBaseline:
    """`logistic_regression_pipeline` on the same pair features."""

    name = "logistic_regression"

    def __init__(self, feature_names: tuple[str, ...] = FEATURE_COLUMNS) -> None:
        self.feature_names = feature_names

    def fit(self, train: PairFrame, calibration: PairFrame) -> LogisticBaseline:
        self.pipeline_ = logistic_regression_pipeline(self.feature_names)
        self.pipeline_.fit(train.features[list(self.feature_names)], train.labels)
        return self

    def predict_win_probability(self, features: pd.DataFrame) -> np.ndarray:
        result: np.ndarray = self.pipeline_.predict_proba(features[list(self.feature_names)])[:, 1]
        return result


def baselines(seed: int = 0, feature_names: tuple[str, ...] = FEATURE_COLUMNS) -> list[WinProbabilityModel]:
    """The baselines every evaluation reports beside the model, by their JSON names; logistic
    regression uses `feature_names` (the model's)."""
    return [
        RandomBaseline(seed=seed),
        SingleFeatureBaseline("partner_win_rate", WIN_RATE_OVERALL),
        SingleFeatureBaseline("embedding_cosine", EMBEDDING_SIMILARITY),
        LogisticBaseline(feature_names=feature_names),
    ]
