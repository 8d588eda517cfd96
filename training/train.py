"""Train, evaluate and register the win model: plain functions the CLI and tests call directly.

Flow: ecosystem -> embeddings -> point-in-time pair features for every historical attempt ->
time-ordered split (train | calibration | validation | test by deal `created_at`) -> model and
baselines -> metrics (observed outcomes; oracle slates when the ground truth is known) -> MLflow
run + registered version -> `champion` moves only if the new version beats it on validation.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import schema
from features.embed import Encoder, make_encoder
from features.index import PartnerIndex
from features.pairs import DealBatch, FeatureContext, build_feature_context, deal_batch, pair_features
from features.progress import SILENT, Progress
from features.synthetic import GroundTruth, oracle_probability
from models.bundle import BundleManifest, ModelBundle
from models.registry import CHAMPION, REGISTERED_WIN_MODEL, Paths, download_bundle, version_by_alias
from models.win import WinModel
from training import evaluate, plots, tracking
from training.config import EvaluationConfig, SplitConfig, TrainConfig
from training.evaluate import Slates
from training.win_model import PairFrame, WinModelTrainer, WinProbabilityModel, baselines

SPLITS = ("train", "calibration", "validation", "test")


@dataclass(frozen=True)
class PairDataset:
    """All historical attempts as feature rows, sorted by deal time (rows of a deal contiguous)."""

    context: FeatureContext
    deals: DealBatch
    deal_vectors: np.ndarray  # (m, d)
    rows: PairFrame
    row_seconds: np.ndarray  # (n,) deal created_at, int64 seconds
    partner_rows: np.ndarray  # (n,) partner position in the context


@dataclass(frozen=True)
class TrainReport:
    metrics: dict[str, Any]  # JSON: one object per model/system + "rows"
    validation: dict[str, Any]
    version: tracking.RegisteredVersion
    alias: str
    promoted: bool
    champion_before: str | None
    decision: str  # why the alias moved or not, in words
    model: WinModel


def embed_ecosystem(partners: pd.DataFrame, deals: pd.DataFrame, encoder: Encoder) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) partner profile and (m, d) deal requirement embeddings."""
    return (
        encoder.encode(partners[schema.PROFILE_TEXT].astype(str).tolist()),
        encoder.encode(deals[schema.REQUIREMENT_TEXT].astype(str).tolist()),
    )


def build_dataset(ecosystem: schema.Ecosystem, encoder: Encoder, progress: Progress = SILENT) -> PairDataset:
    progress.step(f"embedding {len(ecosystem.partners):,} profiles and {len(ecosystem.deals):,} deals ({encoder.name})")
    partner_vectors, deal_vectors = embed_ecosystem(ecosystem.partners, ecosystem.deals, encoder)
    progress.step("indexing history")
    context = build_feature_context(
        ecosystem.partners, ecosystem.deals, ecosystem.outcomes, ecosystem.engagement, partner_vectors
    )
    deals = deal_batch(ecosystem.deals, deal_vectors, context.products, context.regions)
    deal_position = pd.Series(np.arange(len(ecosystem.deals)), index=ecosystem.deals[schema.DEAL_ID].astype(str))
    deal_rows = deal_position.loc[ecosystem.outcomes[schema.DEAL_ID].astype(str)].to_numpy()
    partner_rows = np.array([context.partner_position[p] for p in ecosystem.outcomes[schema.PARTNER_ID].astype(str)])
    order = np.lexsort((deal_rows, deals.created_seconds[deal_rows]))
    deal_rows, partner_rows = deal_rows[order], partner_rows[order]
    progress.step(f"point-in-time features for {len(order):,} (deal, partner) rows")
    features = pair_features(context, deals, deal_rows, partner_rows)
    labels = ecosystem.outcomes[schema.WON].to_numpy(dtype=np.int64)[order]
    return PairDataset(
        context=context,
        deals=deals,
        deal_vectors=deal_vectors,
        rows=PairFrame(features=features, labels=labels, group_ids=deal_rows, source_rows=order),
        row_seconds=deals.created_seconds[deal_rows],
        partner_rows=partner_rows,
    )


def split_boundaries(row_seconds: np.ndarray, group_ids: np.ndarray, split: SplitConfig) -> np.ndarray:
    """Three cut times (int64 seconds) so the deal shares follow `split`; a deal is never cut."""
    deal_seconds = np.sort(pd.Series(row_seconds).groupby(group_ids).first().to_numpy())
    later = np.cumsum([split.test_share, split.validation_share, split.calibration_share])
    quantiles = 1.0 - later[::-1]
    return np.asarray(deal_seconds[(quantiles * (len(deal_seconds) - 1)).astype(int)], dtype=np.int64)


def time_split(dataset: PairDataset, split: SplitConfig) -> dict[str, PairFrame]:
    """train | calibration | validation | test by deal created_at (cut times inclusive on the right)."""
    cuts = split_boundaries(dataset.row_seconds, dataset.rows.group_ids, split)
    window = np.searchsorted(cuts, dataset.row_seconds, side="right")
    frames: dict[str, PairFrame] = {}
    for index, name in enumerate(SPLITS):
        mask = window == index
        frames[name] = PairFrame(
            features=dataset.rows.features[mask].reset_index(drop=True),
            labels=dataset.rows.labels[mask],
            group_ids=dataset.rows.group_ids[mask],
            source_rows=dataset.rows.source_rows[mask],
        )
        if len(frames[name]) == 0 or len(np.unique(frames[name].labels)) < 2:
            raise ValueError(f"the {name} window has no rows of both outcomes: the history is too small to split")
    return frames


def oracle_slates(
    dataset: PairDataset,
    ecosystem: schema.Ecosystem,
    truth: GroundTruth,
    deal_rows: np.ndarray,
    config: EvaluationConfig,
) -> Slates:
    """For sampled test deals, up to `slate_size` partners operating in the deal's region and
    joined before it, each scored by the generator's true win probability."""
    rng = np.random.default_rng(config.seed)
    context = dataset.context
    chosen = rng.choice(np.unique(deal_rows), size=min(config.slate_deals, len(np.unique(deal_rows))), replace=False)
    slate_deals: list[np.ndarray] = []
    slate_partners: list[np.ndarray] = []
    for deal_row in np.sort(chosen):
        eligible = np.flatnonzero(
            context.partner_regions[:, dataset.deals.region_index[deal_row]]
            & (context.partner_joined_seconds < dataset.deals.created_seconds[deal_row])
        )
        if len(eligible) < 2:
            continue
        picked = rng.choice(eligible, size=min(config.slate_size, len(eligible)), replace=False)
        slate_deals.append(np.full(len(picked), deal_row))
        slate_partners.append(picked)
    deal_rows_flat, partner_rows_flat = np.concatenate(slate_deals), np.concatenate(slate_partners)
    pairs = pd.DataFrame(
        {
            schema.DEAL_ID: ecosystem.deals[schema.DEAL_ID].to_numpy()[deal_rows_flat],
            schema.PARTNER_ID: context.partner_ids[partner_rows_flat],
        }
    )
    features = pair_features(context, dataset.deals, deal_rows_flat, partner_rows_flat)
    return Slates(
        features=features,
        gains=oracle_probability(truth, ecosystem, pairs),
        group_ids=deal_rows_flat,
        tenure_days=features["tenure_days"].to_numpy(),
    )


def fit_models(config: TrainConfig, frames: dict[str, PairFrame]) -> list[WinProbabilityModel]:
    """Our model first, then every baseline, all fitted on the same windows."""
    models: list[WinProbabilityModel] = [WinModelTrainer(config.model), *baselines(config.model.seed)]
    for model in models:
        model.fit(frames["train"], frames["calibration"])
    return models


def evaluate_models(
    models: list[WinProbabilityModel], frame: PairFrame, slates: Slates | None
) -> dict[str, dict[str, float]]:
    """Per model: binary metrics on observed outcomes (+ ranking metrics on oracle slates)."""
    results: dict[str, dict[str, float]] = {}
    for model in models:
        metrics = evaluate.binary_metrics(frame.labels, model.predict_win_probability(frame.features))
        if slates is not None:
            scores = model.predict_win_probability(slates.features)
            metrics |= evaluate.ranking_metrics(slates.gains, scores, slates.group_ids)
        results[model.name] = metrics
    return results


def oracle_metrics(frame_gains: np.ndarray | None, frame: PairFrame, slates: Slates | None) -> dict[str, float]:
    """The ceiling: the true probability as the score (NDCG 1 on slates by construction)."""
    metrics: dict[str, float] = {}
    if frame_gains is not None:
        metrics |= evaluate.binary_metrics(frame.labels, frame_gains)
    if slates is not None:
        metrics |= evaluate.ranking_metrics(slates.gains, slates.gains, slates.group_ids)
    return metrics


def _champion_score(
    paths: Paths, config: TrainConfig, frame: PairFrame, workdir: Path
) -> tuple[str | None, float | None]:
    champion = version_by_alias(paths, REGISTERED_WIN_MODEL, CHAMPION)
    if champion is None:
        return None, None
    bundle_dir = download_bundle(paths, champion, workdir / "champion")
    bundle = ModelBundle.load(bundle_dir, with_history=False)
    if not set(bundle.manifest.feature_names) <= set(frame.features.columns):
        return champion.version, None
    probabilities = bundle.win_model.predict_win_probability(frame.features)
    return champion.version, evaluate.binary_metrics(frame.labels, probabilities)[config.promotion_metric]


def run_training(
    config: TrainConfig,
    paths: Paths,
    ecosystem: schema.Ecosystem,
    truth: GroundTruth | None = None,
    progress: Progress = SILENT,
) -> TrainReport:
    """Fit, evaluate, log and register; returns the metrics JSON and the alias decision."""
    encoder = make_encoder(config.encoder, paths.cache_dir)
    dataset = build_dataset(ecosystem, encoder, progress)
    frames = time_split(dataset, config.split)
    progress.step(f"fitting the model and {len(baselines())} baselines on {len(frames['train']):,} rows")
    models = fit_models(config, frames)
    trainer = models[0]
    assert isinstance(trainer, WinModelTrainer)
    win_model = trainer.model_

    slates = None
    test_gains = None
    if truth is not None:
        progress.step("scoring oracle slates")
        slates = oracle_slates(dataset, ecosystem, truth, frames["test"].group_ids, config.evaluation)
        test_gains = truth.outcome_probability[frames["test"].source_rows]
    progress.step("evaluating on validation and test windows")
    validation = evaluate_models(models, frames["validation"], None)
    metrics: dict[str, Any] = evaluate_models(models, frames["test"], slates)
    if truth is not None:
        metrics["oracle"] = oracle_metrics(test_gains, frames["test"], slates)
    metrics["rows"] = {name: len(frame) for name, frame in frames.items()} | (
        {"slate_deals": len(np.unique(slates.group_ids)), "slate_rows": len(slates.gains)} if slates else {}
    )

    with tempfile.TemporaryDirectory() as tmp, tracking.start_run(paths, "train-win-model") as run:
        workdir = Path(tmp)
        progress.step("logging to MLflow and registering the model")
        run.log_params({"model": asdict(config.model), "split": asdict(config.split), "encoder": encoder.name})
        run.log_params({"ecosystem": asdict(config.ecosystem)} if truth is not None else {"data": "external"})
        run.log_metrics({"test": metrics, "val": validation})
        test_frame = frames["test"]
        for figure_path in plots.training_figures(
            win_model, test_frame.labels, win_model.predict_win_probability(test_frame.features), slates, workdir
        ):
            run.log_artifact(figure_path, "figures")
        bundle = ModelBundle(
            manifest=BundleManifest(
                model_name=REGISTERED_WIN_MODEL,
                encoder=config.encoder,
                feature_names=win_model.feature_names,
                products=dataset.context.products,
                regions=dataset.context.regions,
                history_end=dataset.context.history_end.isoformat(),
                training_rows=len(frames["train"]),
            ),
            win_model=win_model,
            index=PartnerIndex.build(dataset.context.partner_ids.tolist(), dataset.context.partner_vectors),
            history={
                schema.PARTNERS.name: ecosystem.partners,
                schema.DEALS.name: ecosystem.deals,
                schema.OUTCOMES.name: ecosystem.outcomes,
                schema.ENGAGEMENT.name: ecosystem.engagement,
            },
        )
        champion_before, champion_score = _champion_score(paths, config, frames["validation"], workdir)
        version = tracking.register_bundle(
            run,
            bundle.save(workdir / "bundle"),
            REGISTERED_WIN_MODEL,
            win_model.feature_names,
            {"encoder": encoder.name, "features": ",".join(win_model.feature_names)},
        )
        new_score = validation["model"][config.promotion_metric]
        promoted, decision = promotion_decision(config.promotion_metric, new_score, champion_before, champion_score)
        alias = tracking.mark_version(REGISTERED_WIN_MODEL, version.version, promoted)
        run.set_tags({"alias": alias, "decision": decision})
    return TrainReport(
        metrics=metrics,
        validation=validation,
        version=version,
        alias=alias,
        promoted=promoted,
        champion_before=champion_before,
        decision=decision,
        model=win_model,
    )


def promotion_decision(
    metric: str, new_score: float, champion_version: str | None, champion_score: float | None
) -> tuple[bool, str]:
    if champion_version is None:
        return True, "no champion was registered: this version becomes the champion"
    if champion_score is None:
        return True, f"champion v{champion_version} needs features this data lacks: replaced"
    lower_is_better = metric in {"log_loss", "ece"}
    better = new_score < champion_score if lower_is_better else new_score > champion_score
    comparison = f"validation {metric} {new_score:.4f} vs champion v{champion_version} {champion_score:.4f}"
    if better:
        return True, f"{comparison}: promoted to champion"
    return False, f"{comparison}: not better, kept as challenger"
