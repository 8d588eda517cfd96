"""Honest lead-scoring evaluations on public data: calibrated LightGBM against logistic regression.

Both evaluations train on one file (or split directory) and score another that lies later in time,
with pre-outcome features only unless leaks are asked for on purpose. The recipe:

1. Categorical columns become pandas categories whose categories are fixed from the training rows;
   values unseen in training become missing. Numeric columns stay float64 with NaN for missing.
2. The time-latest 20% of the training rows form a validation slice. Each LightGBM candidate in
   `LIGHTGBM_CANDIDATES` is fit on the older 80% and the one with the best ROC-AUC on the slice
   wins (the test file is never used for a choice).
3. Calibration (`models.calibration.select_calibrator`, "auto"): the winning parameters are fit on
   CALIBRATION_FOLDS stratified folds of all training rows, so each row gets a score from a model
   that did not see it, a model of about the final one's size. On those scores the method (none,
   platt, isotonic) is chosen by cross-validated log-loss and fitted on all of them.
4. The winning candidate is refit on all training rows (same parameters) and its scores pass
   through that calibrator.
5. Baseline: `training.win_model.logistic_regression_pipeline` fit on all training rows, same columns.

Results are JSON-ready dicts; metrics (with 95% bootstrap intervals) come from
`training.evaluate.binary_metrics_with_intervals`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from features import io
from features.public_data import (
    OLIST_FIRST_CONTACT,
    OLIST_LABEL,
    OLIST_LANDING_PAGE,
    OLIST_MQL_FILE,
    OLIST_MQL_ID,
    OLIST_ORIGIN,
    XEDUCATION_ID_COLUMNS,
    XEDUCATION_LABEL,
    XEDUCATION_LEAD_NUMBER,
    XEDUCATION_LEAKY_COLUMNS,
    load_olist,
    load_olist_won_dates,
    load_xeducation,
)
from models.calibration import CALIBRATION_FOLDS, CalibrationChoice, select_calibrator
from training.evaluate import FloatArray, binary_metrics_with_intervals, bootstrap_interval, log_loss, roc_auc
from training.win_model import logistic_regression_pipeline

RANDOM_STATE = 0
VALIDATION_FRACTION = 0.2  # the time-latest share of training rows, used to choose LightGBM parameters
CALIBRATION: CalibrationChoice = "auto"  # chosen by cross-validation on cross-fitted training scores
MISSING_CATEGORY = "(missing)"

LIGHTGBM_FIXED: Mapping[str, Any] = {"random_state": RANDOM_STATE, "n_jobs": 1, "verbose": -1}
LIGHTGBM_CANDIDATES: tuple[Mapping[str, float | int], ...] = (
    {"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 20},
    {"n_estimators": 400, "learning_rate": 0.03, "num_leaves": 7, "min_child_samples": 30},
    {
        "n_estimators": 600,
        "learning_rate": 0.02,
        "num_leaves": 7,
        "min_child_samples": 40,
        "colsample_bytree": 0.7,
        "cat_smooth": 20,
        "min_data_per_group": 50,
    },
    {
        "n_estimators": 300,
        "learning_rate": 0.03,
        "num_leaves": 4,
        "min_child_samples": 30,
        "cat_smooth": 30,
        "cat_l2": 20,
        "min_data_per_group": 20,
    },
)

OLIST_WEEKDAY = "contact_weekday"


@dataclass(frozen=True)
class FeatureColumns:
    """The model's input columns: numeric ones (float64, NaN = missing) and categorical ones."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [*self.numeric, *self.categorical]


def _require_two_classes(labels: pd.Series, path: Path) -> None:
    if labels.nunique() < 2:
        raise io.DataError(
            path, "the label has a single class; a model cannot be trained or scored", column=labels.name
        )


def _model_frame(frame: pd.DataFrame, columns: FeatureColumns, categories: Mapping[str, pd.Index]) -> pd.DataFrame:
    """(rows, features): numeric float64 and categoricals with the training categories (unseen -> NaN)."""
    model_frame = pd.DataFrame(index=frame.index)
    for column in columns.numeric:
        model_frame[column] = frame[column].astype("float64")
    for column in columns.categorical:
        values = frame[column].astype("str")
        known = values.where(values.isin(categories[column]))
        model_frame[column] = pd.Categorical(known, categories=categories[column])
    return model_frame


def _baseline_frame(model_frame: pd.DataFrame, columns: FeatureColumns) -> pd.DataFrame:
    """The logistic-regression view of a model frame: categoricals as str with missing spelled out."""
    baseline = model_frame.copy()
    for column in columns.categorical:
        baseline[column] = model_frame[column].astype("str").fillna(MISSING_CATEGORY).astype(object)
    return baseline


def _lightgbm(params: Mapping[str, float | int]) -> lgb.LGBMClassifier:
    settings: dict[str, Any] = {**LIGHTGBM_FIXED, **params}
    return lgb.LGBMClassifier(**settings)


def _raw_score(model: lgb.LGBMClassifier, frame: pd.DataFrame) -> FloatArray:
    """(rows,) float64 log-odds margin of the positive class."""
    return np.asarray(model.predict(frame, raw_score=True), dtype=np.float64)


def _log_loss_gain(labels: FloatArray, model: FloatArray, baseline: FloatArray) -> float:
    """Baseline log-loss minus the model's, in nats, on the same (n,) rows: > 0 when the model is better."""
    return log_loss(labels, baseline) - log_loss(labels, model)


def _compare_models(
    train: pd.DataFrame,
    train_labels: pd.Series,
    train_order: pd.Series,
    test: pd.DataFrame,
    test_labels: pd.Series,
    columns: FeatureColumns,
) -> dict[str, Any]:
    """Fit the calibrated LightGBM and the logistic regression on `train`, score both on `test`.

    `train_order` sorts training rows by time (later = larger); labels are 0/1. Returns the metrics
    of both models, the row counts, the feature names, the calibration method and LightGBM params.
    """
    categories = {
        column: pd.Index(sorted(train[column].dropna().astype("str").unique())) for column in columns.categorical
    }
    order = np.argsort(train_order.to_numpy(), kind="stable")
    train_frame = _model_frame(train, columns, categories).iloc[order]
    train_y = train_labels.to_numpy(dtype=np.float64)[order]
    test_frame = _model_frame(test, columns, categories)
    test_y = test_labels.to_numpy(dtype=np.float64)

    fit_rows = round(len(train_frame) * (1 - VALIDATION_FRACTION))
    fit_x, fit_y = train_frame.iloc[:fit_rows], train_y[:fit_rows]
    slice_x, slice_y = train_frame.iloc[fit_rows:], train_y[fit_rows:]
    if min(fit_y.min(), slice_y.min()) == 1 or max(fit_y.max(), slice_y.max()) == 0:
        raise ValueError("both classes must appear in the older 80% and the latest 20% of the training rows")

    best_auc, best_params = -np.inf, LIGHTGBM_CANDIDATES[0]
    for params in LIGHTGBM_CANDIDATES:
        slice_auc = roc_auc(slice_y, _raw_score(_lightgbm(params).fit(fit_x, fit_y), slice_x))
        if slice_auc > best_auc:
            best_auc, best_params = slice_auc, params
    # Cross-fitted scores: every training row scored by a model that did not see it.
    out_of_fold_scores = np.empty(len(train_y), dtype=np.float64)
    folds = StratifiedKFold(n_splits=CALIBRATION_FOLDS, shuffle=True, random_state=RANDOM_STATE)
    for fold_rows, held_rows in folds.split(train_frame, train_y):
        fold_model = _lightgbm(best_params).fit(train_frame.iloc[fold_rows], train_y[fold_rows])
        out_of_fold_scores[held_rows] = _raw_score(fold_model, train_frame.iloc[held_rows])
    calibration = select_calibrator(CALIBRATION, out_of_fold_scores, train_y, seed=RANDOM_STATE)
    model = _lightgbm(best_params).fit(train_frame, train_y)
    model_probabilities = calibration.calibrator.predict(_raw_score(model, test_frame))

    baseline = logistic_regression_pipeline(columns.numeric, columns.categorical)
    baseline.fit(_baseline_frame(train_frame, columns), train_y)
    baseline_probabilities = np.asarray(baseline.predict_proba(_baseline_frame(test_frame, columns))[:, 1])
    compared = (test_y, model_probabilities, baseline_probabilities)
    gain_low, gain_high = bootstrap_interval(_log_loss_gain, *compared, seed=RANDOM_STATE)
    return {
        "model": binary_metrics_with_intervals(test_y, model_probabilities, seed=RANDOM_STATE),
        "logistic_regression": binary_metrics_with_intervals(test_y, baseline_probabilities, seed=RANDOM_STATE),
        "log_loss_gain_over_logistic_regression": {
            "value": _log_loss_gain(*compared),
            "ci_low": gain_low,
            "ci_high": gain_high,
        },
        "rows": {"train": len(train_frame), "test": len(test_frame)},
        "features": columns.names,
        "calibration": calibration.to_dict(),
        "lightgbm_params": dict(best_params),
        "validation_roc_auc": best_auc,
    }


def evaluate_leads(train_csv: Path, test_csv: Path, include_leaky: bool = False) -> dict[str, Any]:
    """Train on one X Education-format CSV, score another; a dict of metrics (see module docstring).

    Features: every column of the cleaned training file but the ids, the label and, unless
    `include_leaky`, XEDUCATION_LEAKY_COLUMNS (recorded after the sales contact: with them ROC-AUC
    jumps, which shows the leak, not a better model). Training rows are ordered by Lead Number.
    Returns {"model": {roc_auc, log_loss, ece, rows, <metric>_ci_low, <metric>_ci_high},
    "logistic_regression": {...}, "log_loss_gain_over_logistic_regression": {value, ci_low, ci_high}
    (95% paired bootstrap), "rows": {train, test}, "features": [...], "include_leaky": bool,
    "calibration": {method, choice, folds, cv_log_loss, cv_log_loss_se}, "lightgbm_params": {...},
    "validation_roc_auc": float}. Raises DataError for a missing or bad
    file, a missing label or feature column, a non-numeric cell in a numeric feature or one class only.
    """
    train_csv, test_csv = Path(train_csv), Path(test_csv)
    train = load_xeducation(train_csv)
    test = load_xeducation(test_csv, drop_constant_columns=False)
    _require_two_classes(train[XEDUCATION_LABEL], train_csv)
    _require_two_classes(test[XEDUCATION_LABEL], test_csv)
    excluded = {*XEDUCATION_ID_COLUMNS, XEDUCATION_LABEL, *(() if include_leaky else XEDUCATION_LEAKY_COLUMNS)}
    features = [column for column in train.columns if column not in excluded]
    numeric = tuple(column for column in features if pd.api.types.is_numeric_dtype(train[column]))
    columns = FeatureColumns(numeric=numeric, categorical=tuple(c for c in features if c not in numeric))
    for column in features:
        if column not in test.columns:
            raise io.DataError(test_csv, "missing column; the training file has it", column=column)
    test = test.copy()
    for column in columns.numeric:
        values = test[column]
        numbers = pd.to_numeric(values, errors="coerce")
        io.fail_on_first(test_csv, values, numbers.isna() & values.notna(), lambda value: f"{value!r} is not a number")
        test[column] = numbers
    result = _compare_models(
        train, train[XEDUCATION_LABEL], train[XEDUCATION_LEAD_NUMBER], test, test[XEDUCATION_LABEL], columns
    )
    return {**result, "include_leaky": include_leaky}


def _olist_features(mqls: pd.DataFrame) -> pd.DataFrame:
    """Pre-outcome features of Olist MQLs: origin, landing page and the weekday of first contact."""
    return pd.DataFrame(
        {
            OLIST_ORIGIN: mqls[OLIST_ORIGIN],
            OLIST_LANDING_PAGE: mqls[OLIST_LANDING_PAGE],
            OLIST_WEEKDAY: mqls[OLIST_FIRST_CONTACT].dt.day_name(),
        }
    )


def evaluate_olist(train_dir: Path, test_dir: Path) -> dict[str, Any]:
    """Olist MQL -> won: calibrated LightGBM vs logistic regression on pre-outcome features only.

    Features: origin, landing_page_id (categorical, ~500 values; categories from train) and the
    weekday of first contact. Not used: contact month and days since the window start. In a window
    of under a year they only say when the MQL arrived, and conversion by arrival date mostly
    reflects the data's collection window (wins before the first recorded won_date are missing, so
    older MQLs look lost; the newest MQLs have had the least time to convert), not lead quality.
    For the same reason training keeps only MQLs first contacted on or after the first won_date in
    the training data. Returns the `evaluate_leads` keys (without include_leaky) plus "censoring"
    (follow-up of the test MQLs) and "notes". Raises DataError for missing or bad files.
    """
    train_dir, test_dir = Path(train_dir), Path(test_dir)
    train, test = load_olist(train_dir), load_olist(test_dir)
    train_won_at, test_won_at = load_olist_won_dates(train_dir), load_olist_won_dates(test_dir)
    if train_won_at.empty:
        raise io.DataError(train_dir / OLIST_MQL_FILE, "no MQL was won; a model cannot be trained", column=OLIST_LABEL)
    label_window_start = train_won_at.min().normalize()
    in_window = train[OLIST_FIRST_CONTACT] >= label_window_start
    train_used = train[in_window]
    _require_two_classes(train_used[OLIST_LABEL], train_dir / OLIST_MQL_FILE)
    _require_two_classes(test[OLIST_LABEL], test_dir / OLIST_MQL_FILE)

    columns = FeatureColumns(numeric=(), categorical=(OLIST_ORIGIN, OLIST_LANDING_PAGE, OLIST_WEEKDAY))
    result = _compare_models(
        _olist_features(train_used),
        train_used[OLIST_LABEL].astype("int64"),
        train_used[OLIST_FIRST_CONTACT],
        _olist_features(test),
        test[OLIST_LABEL].astype("int64"),
        columns,
    )
    last_recorded_win = max(train_won_at.max(), test_won_at.max() if not test_won_at.empty else train_won_at.max())
    follow_up_days = (last_recorded_win - test[OLIST_FIRST_CONTACT]).dt.days
    contact_of_won = train_used.set_index(OLIST_MQL_ID)[OLIST_FIRST_CONTACT]
    train_lag_days = (train_won_at.reindex(contact_of_won.index).dropna() - contact_of_won).dt.days.dropna()
    slower_share = float((train_lag_days > follow_up_days.min()).mean())
    result["rows"] = {**result["rows"], "train_before_label_window": int((~in_window).sum())}
    result["censoring"] = {
        "label_window_start": f"{label_window_start:%Y-%m-%d}",
        "last_recorded_win": f"{last_recorded_win:%Y-%m-%d}",
        "test_follow_up_days_min": int(follow_up_days.min()),
        "test_follow_up_days_median": float(follow_up_days.median()),
        "train_wins_slower_than_min_follow_up": slower_share,
        "train_positive_rate": float(train_used[OLIST_LABEL].mean()),
        "test_positive_rate": float(test[OLIST_LABEL].mean()),
    }
    result["notes"] = [
        "Right-censoring: the latest MQLs have had the least time to convert; a test MQL has at least "
        f"{int(follow_up_days.min())} days of follow-up, and {slower_share:.1%} of training wins took longer "
        "than that, so some late test MQLs labelled lost may still convert.",
        f"Left truncation: no win before {label_window_start:%Y-%m-%d} is recorded, so "
        f"{int((~in_window).sum())} earlier training MQLs were left out instead of being counted as lost.",
        "Training labels include wins recorded after the split date (closed deals follow their MQL): this "
        "measures how well pre-outcome attributes rank leads, not a point-in-time deployment.",
        "Contact month and days since the window start are not features: they encode arrival time, which "
        "here mostly measures the truncated label window.",
    ]
    return result
