"""Figures for MLflow runs and notebooks (matplotlib, headless). Each returns the saved path."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from models.win import WinModel
from training import evaluate
from training.evaluate import Slates

TENURE_BANDS = (0.0, 90.0, 365.0, np.inf)
TENURE_LABELS = ("0-90 days", "90-365 days", "365+ days")


def tenure_band(tenure_days: np.ndarray) -> np.ndarray:
    """Partner tenure in days -> band label (TENURE_LABELS)."""
    return np.asarray(pd.cut(tenure_days, TENURE_BANDS, labels=TENURE_LABELS, right=False).astype(str))


def calibration_figure(labels: np.ndarray, probabilities: np.ndarray, path: Path) -> Path:
    table = evaluate.calibration_table(labels, probabilities)
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    axis.plot(table["mean_probability"], table["observed_rate"], marker="o", label="model")
    ece = evaluate.expected_calibration_error(labels, probabilities)
    axis.set(xlabel="predicted win probability", ylabel="observed win rate", title=f"Calibration (ECE {ece:.3f})")
    axis.legend()
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def feature_importance_figure(importance: pd.Series, path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(6, 5))
    importance.sort_values().plot.barh(ax=axis)
    axis.set(xlabel="total gain", title="Feature importance")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def ndcg_by_tenure_figure(by_band: dict[str, float], path: Path) -> Path:
    figure, axis = plt.subplots(figsize=(5, 4))
    axis.bar(list(by_band), list(by_band.values()))
    axis.set(ylim=(0, 1), ylabel="NDCG@10 vs oracle", title="Ranking quality by partner tenure")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def training_figures(
    model: WinModel, labels: np.ndarray, probabilities: np.ndarray, slates: Slates | None, directory: Path
) -> list[Path]:
    """Calibration, feature importance and (with oracle slates) NDCG by tenure, plus the importance CSV."""
    importance = model.feature_importance()
    importance_csv = directory / "feature_importance.csv"
    importance.rename("gain").to_csv(importance_csv, index_label="feature")
    paths = [
        calibration_figure(labels, probabilities, directory / "calibration.png"),
        feature_importance_figure(importance, directory / "feature_importance.png"),
        importance_csv,
    ]
    if slates is not None:
        scores = model.predict_win_probability(slates.features)
        by_band = evaluate.ndcg_by_slice(slates.gains, scores, slates.group_ids, tenure_band(slates.tenure_days))
        paths.append(ndcg_by_tenure_figure(by_band, directory / "ndcg_by_tenure.png"))
    return paths
