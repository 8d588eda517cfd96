"""Retrain the win model on its history plus the feedback the CRM sent back, and promote the
challenger only when it beats the champion by a margin we can trust.

    history (champion bundle or a data directory) + feedback tables -> `run_training`'s stages
        -> champion and challenger on the same recent deals -> paired bootstrap over deals
        -> promote when the interval of the log-loss improvement clears the margin

The recent window is every deal after the calibration cut (validation + test windows): neither
model fitted on it (the champion's history ended earlier still). Improvement = champion log-loss
- challenger log-loss over the window's rows, so > 0 means the challenger is better; its interval
resamples whole deals (a deal's rows share a customer and a moment). The new version is tagged
`feedback_sequence` = the store's latest sequence number its history holds. This module never
reads the feedback store: the command line reads it (serving's side) and passes the tables in.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from features import schema
from features.embed import make_encoder
from features.progress import SILENT, Progress
from models.bundle import ModelBundle
from models.calibration import row_log_losses
from models.registry import (
    FEEDBACK_SEQUENCE_TAG,
    REGISTERED_WIN_MODEL,
    Paths,
    RegisteredVersion,
    download_bundle,
    run_params,
)
from models.win import WinModel
from training import tracking
from training.config import RetrainConfig, TrainConfig, config_from_params
from training.evaluate import bootstrap_interval
from training.stages import (
    ENCODER_TAG,
    MODEL_PARAMS_PREFIX,
    UNREADABLE_BUNDLE,
    PairDataset,
    TimeSplits,
    build_dataset,
    embed_ecosystem,
    evaluate_fitted,
    fit_models,
    log_and_register,
    make_bundle,
    time_split,
)
from training.win_model import PairFrame

RUN_NAME = "retrain-win-model"


@dataclass(frozen=True)
class FeedbackTables:
    """What the feedback store adds to the history, in schema columns (times naive UTC)."""

    deals: pd.DataFrame  # DEALS columns: one routed deal per closed decision
    outcomes: pd.DataFrame  # OUTCOMES columns
    engagement: pd.DataFrame  # ENGAGEMENT columns
    sequence: int  # the store's latest sequence number these tables hold (>= 0)


@dataclass(frozen=True)
class Comparison:
    """Champion vs challenger on the same recent rows (log-loss, lower is better)."""

    deals: int
    rows: int
    champion_log_loss: float
    challenger_log_loss: float
    improvement: float  # champion - challenger log-loss: > 0 when the challenger is better
    interval: tuple[float, float]  # bootstrap interval of `improvement` over deals

    def as_metrics(self) -> dict[str, float]:
        return {
            "recent_deals": self.deals,
            "recent_rows": self.rows,
            "champion_log_loss": self.champion_log_loss,
            "challenger_log_loss": self.challenger_log_loss,
            "log_loss_improvement": self.improvement,
            "log_loss_improvement_ci_low": self.interval[0],
            "log_loss_improvement_ci_high": self.interval[1],
        }


@dataclass(frozen=True)
class RetrainReport:
    version: RegisteredVersion
    alias: str
    promoted: bool
    champion_before: str
    decision: str
    comparison: Comparison | None  # None when the champion could not score the recent rows
    feedback_sequence: int
    metrics: dict[str, object]  # the challenger's test-window metrics (`run_training`'s contract)


def champion_history(paths: Paths, champion: RegisteredVersion, workdir: Path) -> schema.Ecosystem:
    """The history tables the champion's bundle was trained on (no communications)."""
    bundle = ModelBundle.load(download_bundle(paths, champion, workdir / "history"))
    return schema.Ecosystem(
        partners=bundle.history[schema.PARTNERS.name],
        deals=bundle.history[schema.DEALS.name],
        outcomes=bundle.history[schema.OUTCOMES.name],
        engagement=bundle.history[schema.ENGAGEMENT.name],
        communications=pd.DataFrame(columns=list(schema.COMMUNICATIONS.columns)),
    )


def with_feedback(history: schema.Ecosystem, feedback: FeedbackTables) -> schema.Ecosystem:
    """`history` with the feedback's deals, outcomes and engagement appended; a deal already in the
    history (an earlier retrain folded it in) is not added twice."""
    known = set(history.deals[schema.DEAL_ID].astype(str))
    new_deals = feedback.deals[~feedback.deals[schema.DEAL_ID].astype(str).isin(known)]
    new_outcomes = feedback.outcomes[feedback.outcomes[schema.DEAL_ID].astype(str).isin(set(new_deals[schema.DEAL_ID]))]

    def appended(base: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([base, extra.reindex(columns=base.columns)], ignore_index=True) if len(extra) else base

    outcomes = appended(history.outcomes, new_outcomes)
    if schema.TEAM_ID in outcomes:
        outcomes[schema.TEAM_ID] = outcomes[schema.TEAM_ID].fillna("")
    deals = appended(history.deals, new_deals)
    if schema.REGISTERED_PARTNER_ID in deals:
        deals[schema.REGISTERED_PARTNER_ID] = deals[schema.REGISTERED_PARTNER_ID].fillna("")
    return replace(
        history,
        deals=deals,
        outcomes=outcomes,
        engagement=appended(history.engagement, feedback.engagement),
    )


def _pooled_improvement(champion_sums: np.ndarray, challenger_sums: np.ndarray, rows: np.ndarray) -> float:
    return float((champion_sums.sum() - challenger_sums.sum()) / rows.sum())


def compare_on_recent(
    champion_probabilities: np.ndarray,
    challenger_probabilities: np.ndarray,
    frame: PairFrame,
    config: RetrainConfig,
) -> Comparison:
    """Pooled log-loss of both models on `frame`'s rows and a paired bootstrap interval (deals
    resampled, `config.resamples` draws at `config.level`) of the champion's minus the challenger's."""
    deal_rows = pd.Series(frame.group_ids)
    champion_sums = pd.Series(row_log_losses(frame.labels, champion_probabilities)).groupby(deal_rows).sum()
    challenger_sums = pd.Series(row_log_losses(frame.labels, challenger_probabilities)).groupby(deal_rows).sum()
    rows = deal_rows.groupby(deal_rows).size()
    arrays = (champion_sums.to_numpy(), challenger_sums.to_numpy(), rows.to_numpy(dtype=np.float64))
    return Comparison(
        deals=len(rows),
        rows=len(frame),
        champion_log_loss=float(champion_sums.sum() / len(frame)),
        challenger_log_loss=float(challenger_sums.sum() / len(frame)),
        improvement=_pooled_improvement(*arrays),
        interval=bootstrap_interval(
            _pooled_improvement, *arrays, resamples=config.resamples, level=config.level, seed=config.seed
        ),
    )


def compare_with_champion(
    champion_model: WinModel | None,
    challenger_model: WinModel,
    dataset: PairDataset,
    splits: TimeSplits,
    config: RetrainConfig,
) -> Comparison | None:
    """Both models on the recent deals (after the calibration cut, see the module docstring); None
    when there is no champion model or it needs features the dataset lacks."""
    recent = dataset.rows.take(dataset.row_seconds > splits.boundaries[1])
    if champion_model is None or not set(champion_model.feature_names) <= set(recent.features.columns):
        return None
    return compare_on_recent(
        champion_model.predict_win_probability(recent.features),
        challenger_model.predict_win_probability(recent.features),
        recent,
        config,
    )


def decide_retrain_promotion(comparison: Comparison | None, margin: float, champion_version: str) -> tuple[bool, str]:
    """(promote?, why in words): promote when the lower end of the improvement's interval is above
    `margin` (log-loss nats); never when the champion could not be compared."""
    if comparison is None:
        return False, f"champion v{champion_version} could not score the recent deals: kept, this version is challenger"
    low, high = comparison.interval
    summary = (
        f"recent {comparison.deals} deals ({comparison.rows} rows): log-loss {comparison.challenger_log_loss:.4f} "
        f"vs champion v{champion_version} {comparison.champion_log_loss:.4f}, improvement "
        f"{comparison.improvement:+.4f} [{low:+.4f}, {high:+.4f}]"
    )
    if low > margin:
        return True, f"{summary} clears the margin {margin:.4f}: promoted to champion"
    return False, f"{summary} does not clear the margin {margin:.4f}: kept as challenger"


def _champion_model(paths: Paths, champion: RegisteredVersion, workdir: Path) -> WinModel | None:
    """The champion's model, or None when its bundle cannot be read."""
    try:
        return ModelBundle.load(download_bundle(paths, champion, workdir / "champion"), with_history=False).win_model
    except UNREADABLE_BUNDLE:
        return None


def retrain_config(base: TrainConfig, paths: Paths, champion: RegisteredVersion) -> TrainConfig:
    """`base` with the champion's encoder and model parameters: the same recipe on more data."""
    model = config_from_params(base.model, run_params(paths, champion.run_id), MODEL_PARAMS_PREFIX)
    return replace(base, model=model, encoder=champion.tags.get(ENCODER_TAG, base.encoder))


def run_retraining(
    config: RetrainConfig,
    paths: Paths,
    champion: RegisteredVersion,
    ecosystem: schema.Ecosystem,
    feedback_sequence: int,
    progress: Progress = SILENT,
) -> RetrainReport:
    """Train a challenger on `ecosystem` (history + feedback) with the champion's recipe, compare
    both on the recent deals, register it tagged with `feedback_sequence`, and move `champion` to
    it only when the improvement's interval clears `config.margin`."""
    train_config = retrain_config(config.train, paths, champion)
    encoder = make_encoder(train_config.encoder, paths.cache_dir)
    with tempfile.TemporaryDirectory() as tmp, tracking.start_run(paths, RUN_NAME) as run:
        embeddings = embed_ecosystem(ecosystem, encoder, progress)
        dataset = build_dataset(ecosystem, embeddings, progress)
        splits = time_split(dataset, train_config.split)
        fitted = fit_models(train_config.model, splits, progress=progress)
        evaluation = evaluate_fitted(fitted, splits, dataset, ecosystem, None, train_config.evaluation, progress)
        bundle = make_bundle(train_config, dataset, ecosystem, fitted, splits)
        tags = {FEEDBACK_SEQUENCE_TAG: str(feedback_sequence)}
        version = log_and_register(run, train_config, embeddings, splits, evaluation, bundle, Path(tmp), tags)
        progress.step(f"comparing with champion v{champion.version} on the recent deals")
        comparison = compare_with_champion(
            _champion_model(paths, champion, Path(tmp)), bundle.win_model, dataset, splits, config
        )
        promoted, decision = decide_retrain_promotion(comparison, config.margin, champion.version)
        comparison_metrics = comparison.as_metrics() if comparison is not None else {}
        run.log_params({"feedback_sequence": feedback_sequence, "margin": config.margin})
        run.log_metrics({"retrain": comparison_metrics})
        alias = tracking.mark_version(
            paths, REGISTERED_WIN_MODEL, version.version, promoted, decision, comparison_metrics
        )
    return RetrainReport(
        version=version,
        alias=alias,
        promoted=promoted,
        champion_before=champion.version,
        decision=decision,
        comparison=comparison,
        feedback_sequence=feedback_sequence,
        metrics=evaluation.metrics,
    )
