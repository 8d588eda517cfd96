"""Train, evaluate, register and promote the win model as named stages, each a plain function with
a typed, frozen result, that tests call one by one and `run_training` composes:

    embed_ecosystem -> build_dataset -> time_split -> fit_models -> evaluate_fitted
        -> make_bundle -> log_and_register -> promote

Deals are split by `created_at` (train | calibration | validation | test); metrics are on observed
outcomes, plus oracle slates when the ground truth is known. The registry is read before any
expensive work (fail fast) and again at promotion: a registry that cannot be read raises
`models.registry.RegistryError` naming the store, and nothing is promoted. `champion` moves only
when the new version beats it on the validation rows. The champion scores them with its own bundle
when it can; a champion whose bundle cannot be read, or that needs features or an encoder this data
lacks, is compared through its configuration refit on the same training windows; when even that is
impossible the champion stays and the new version becomes `challenger`, the reason on the run.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features import schema
from features.embed import Encoder, make_encoder
from features.index import PartnerIndex
from features.pairs import FEATURE_COLUMNS, DealBatch, FeatureContext, build_feature_context, deal_batch, pair_features
from features.progress import SILENT, Progress
from features.synthetic import GroundTruth, oracle_probability
from models.bundle import BundleFormatError, BundleManifest, ModelBundle
from models.drift import PREDICTION_COLUMN, DriftReference, reference_of
from models.registry import (
    CHAMPION,
    REGISTERED_WIN_MODEL,
    Paths,
    RegisteredVersion,
    download_bundle,
    one_line,
    run_params,
    version_by_alias,
)
from models.win import WinModel
from training import evaluate, plots, tracking
from training.config import EvaluationConfig, SplitConfig, TrainConfig, WinModelConfig, config_from_params
from training.dask_fit import DaskWinModelTrainer
from training.evaluate import Slates
from training.win_model import PairFrame, WinModelTrainer, WinProbabilityModel, baselines

SPLITS = ("train", "calibration", "validation", "test")
RUN_NAME = "train-win-model"
MODEL_PARAMS_PREFIX = "model_"  # how `log_and_register` logs `config.model` (flattened)
FEATURES_TAG = "features"  # model version tag: the comma-joined feature list
ENCODER_TAG = "encoder"
LOWER_IS_BETTER = frozenset({"log_loss", "ece"})
# What reading a champion's bundle raises when its files are missing, malformed or of another format.
UNREADABLE_BUNDLE = (BundleFormatError, OSError, ValueError, KeyError, TypeError, lgb.basic.LightGBMError)


@dataclass(frozen=True)
class Embeddings:
    encoder: str  # the encoder's own name (e.g. "hashing-32", "all-MiniLM-L6-v2-onnx-int8")
    partner_vectors: np.ndarray  # (n, d) float32 unit rows, aligned with the partners table
    deal_vectors: np.ndarray  # (m, d) float32 unit rows, aligned with the deals table


@dataclass(frozen=True)
class PairDataset:
    """All historical attempts as feature rows, sorted by deal time (rows of a deal contiguous)."""

    context: FeatureContext
    deals: DealBatch
    rows: PairFrame
    row_seconds: np.ndarray  # (n,) deal created_at, int64 seconds


@dataclass(frozen=True)
class TimeSplits:
    """Time-ordered windows of whole deals; every deal's rows sit in exactly one window."""

    train: PairFrame
    calibration: PairFrame
    validation: PairFrame
    test: PairFrame
    boundaries: np.ndarray  # (3,) int64 seconds: last deal created_at of train, calibration, validation

    def windows(self) -> dict[str, PairFrame]:
        """Window name -> rows, in time order (`SPLITS`)."""
        return {name: getattr(self, name) for name in SPLITS}

    def row_counts(self) -> dict[str, int]:
        return {name: len(frame) for name, frame in self.windows().items()}

    def with_feature(self, name: str, values_by_source_row: np.ndarray) -> TimeSplits:
        """Every window with one more feature column (`PairFrame.with_feature`)."""
        windows = {window: frame.with_feature(name, values_by_source_row) for window, frame in self.windows().items()}
        return TimeSplits(**windows, boundaries=self.boundaries)


@dataclass(frozen=True)
class FittedModels:
    model: WinModelTrainer  # fitted: `model.model_` is the WinModel a bundle stores
    baselines: tuple[WinProbabilityModel, ...]  # fitted on the same windows

    @property
    def all(self) -> list[WinProbabilityModel]:
        """Our model first, then every baseline."""
        return [self.model, *self.baselines]


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, Any]  # the JSON contract (test window): one object per model/system + "rows"
    validation: dict[str, dict[str, float]]  # per model: binary metrics on the validation window
    slates: Slates | None  # oracle slates of test deals; None without ground truth


@dataclass(frozen=True)
class ChampionScore:
    version: str
    score: float | None  # the promotion metric on the validation rows; None: no comparison possible
    basis: str  # how it was scored or why it could not be, in words (logged as `champion_comparison`)


@dataclass(frozen=True)
class Promotion:
    alias: str  # the alias the new version got: champion or challenger
    promoted: bool
    champion_before: str | None  # the champion's version at promotion time
    decision: str  # why the alias moved or not, in words


@dataclass(frozen=True)
class TrainReport:
    metrics: dict[str, Any]  # JSON: one object per model/system + "rows"
    validation: dict[str, Any]
    version: RegisteredVersion
    alias: str
    promoted: bool
    champion_before: str | None
    decision: str
    model: WinModel


def current_champion(paths: Paths) -> RegisteredVersion | None:
    """The champion now. Read before expensive work so that a registry that is down, locked or
    corrupt fails at once (RegistryError naming the store) rather than after training."""
    return version_by_alias(paths, REGISTERED_WIN_MODEL, CHAMPION)


def embed_ecosystem(ecosystem: schema.Ecosystem, encoder: Encoder, progress: Progress = SILENT) -> Embeddings:
    """Partner profile and deal requirement embeddings."""
    progress.step(f"embedding {len(ecosystem.partners):,} profiles and {len(ecosystem.deals):,} deals ({encoder.name})")
    return Embeddings(
        encoder=encoder.name,
        partner_vectors=encoder.encode(ecosystem.partners[schema.PROFILE_TEXT].astype(str).tolist(), progress),
        deal_vectors=encoder.encode(ecosystem.deals[schema.REQUIREMENT_TEXT].astype(str).tolist(), progress),
    )


def build_dataset(ecosystem: schema.Ecosystem, embeddings: Embeddings, progress: Progress = SILENT) -> PairDataset:
    """Point-in-time features of every historical (deal, partner) attempt, sorted by deal time."""
    progress.step("indexing history")
    context = build_feature_context(
        ecosystem.partners, ecosystem.deals, ecosystem.outcomes, ecosystem.engagement, embeddings.partner_vectors
    )
    deals = deal_batch(ecosystem.deals, embeddings.deal_vectors, context.products, context.regions)
    deal_position = pd.Series(np.arange(len(ecosystem.deals)), index=ecosystem.deals[schema.DEAL_ID].astype(str))
    deal_rows = deal_position.loc[ecosystem.outcomes[schema.DEAL_ID].astype(str)].to_numpy()
    partner_rows = np.array([context.partner_position[p] for p in ecosystem.outcomes[schema.PARTNER_ID].astype(str)])
    order = np.lexsort((deal_rows, deals.created_seconds[deal_rows]))
    deal_rows, partner_rows = deal_rows[order], partner_rows[order]
    progress.step(f"point-in-time features for {len(order):,} (deal, partner) rows")
    features = pair_features(context, deals, deal_rows, partner_rows, progress=progress)
    labels = ecosystem.outcomes[schema.WON].to_numpy(dtype=np.int64)[order]
    return PairDataset(
        context=context,
        deals=deals,
        rows=PairFrame(features=features, labels=labels, group_ids=deal_rows, source_rows=order),
        row_seconds=deals.created_seconds[deal_rows],
    )


def split_boundaries(row_seconds: np.ndarray, group_ids: np.ndarray, split: SplitConfig) -> np.ndarray:
    """Three cut times (int64 seconds) so the deal shares follow `split`; a deal is never cut."""
    deal_seconds = np.sort(pd.Series(row_seconds).groupby(group_ids).first().to_numpy())
    later = np.cumsum([split.test_share, split.validation_share, split.calibration_share])
    quantiles = 1.0 - later[::-1]
    return np.asarray(deal_seconds[(quantiles * (len(deal_seconds) - 1)).astype(int)], dtype=np.int64)


def time_split(dataset: PairDataset, split: SplitConfig) -> TimeSplits:
    """train | calibration | validation | test by deal created_at (cut times inclusive on the right).
    Raises ValueError when a window lacks rows of either outcome."""
    cuts = split_boundaries(dataset.row_seconds, dataset.rows.group_ids, split)
    window = np.searchsorted(cuts, dataset.row_seconds, side="right")
    frames = {name: dataset.rows.take(window == index) for index, name in enumerate(SPLITS)}
    for name, frame in frames.items():
        if len(frame) == 0 or len(np.unique(frame.labels)) < 2:
            raise ValueError(f"the {name} window has no rows of both outcomes: the history is too small to split")
    return TimeSplits(**frames, boundaries=cuts)


def fit_models(
    config: WinModelConfig,
    splits: TimeSplits,
    feature_names: tuple[str, ...] = FEATURE_COLUMNS,
    progress: Progress = SILENT,
    dask_scheduler: str | None = None,
) -> FittedModels:
    """Our model and every baseline, all fitted on the train window (calibration window: early
    stopping and probability calibration); our model's LightGBM on the Dask cluster at `dask_scheduler`
    when given (`training.dask_fit`)."""
    model = (
        WinModelTrainer(config, feature_names=feature_names)
        if dask_scheduler is None
        else DaskWinModelTrainer(config, dask_scheduler, feature_names=feature_names)
    )
    fitted = FittedModels(model=model, baselines=tuple(baselines(config.seed, feature_names)))
    progress.step(f"fitting the model and {len(fitted.baselines)} baselines on {len(splits.train):,} rows")
    for candidate in fitted.all:
        candidate.fit(splits.train, splits.calibration)
    return fitted


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


def evaluate_fitted(
    fitted: FittedModels,
    splits: TimeSplits,
    dataset: PairDataset,
    ecosystem: schema.Ecosystem,
    truth: GroundTruth | None,
    config: EvaluationConfig,
    progress: Progress = SILENT,
) -> Evaluation:
    """Every model on the validation window (promotion) and the test window (reported), with the
    oracle's ceiling and ranking metrics on oracle slates when the ground truth is known."""
    slates = None
    if truth is not None:
        progress.step("scoring oracle slates")
        slates = oracle_slates(dataset, ecosystem, truth, splits.test.group_ids, config)
    progress.step("evaluating on validation and test windows")
    validation = evaluate_models(fitted.all, splits.validation, None)
    metrics: dict[str, Any] = evaluate_models(fitted.all, splits.test, slates)
    if truth is not None:
        metrics["oracle"] = oracle_metrics(truth.outcome_probability[splits.test.source_rows], splits.test, slates)
    metrics["rows"] = splits.row_counts() | (
        {"slate_deals": len(np.unique(slates.group_ids)), "slate_rows": len(slates.gains)} if slates else {}
    )
    metrics["calibration"] = fitted.model.calibration_.to_dict()  # the method chosen and its cross-validated scores
    return Evaluation(metrics=metrics, validation=validation, slates=slates)


def make_bundle(
    config: TrainConfig, dataset: PairDataset, ecosystem: schema.Ecosystem, fitted: FittedModels, splits: TimeSplits
) -> ModelBundle:
    """What a service needs to route: the fitted model, the history, the partner index."""
    return routing_bundle(
        REGISTERED_WIN_MODEL, config.encoder, fitted.model.model_, dataset, ecosystem, len(splits.train)
    )


def routing_bundle(
    model_name: str,
    encoder: str,
    win_model: WinModel,
    dataset: PairDataset,
    ecosystem: schema.Ecosystem,
    training_rows: int,
) -> ModelBundle:
    """A bundle registered as `model_name` that a routing state loads: `win_model`, the history
    tables of `ecosystem` and the partner index of `dataset` (win and team bundles alike)."""
    return ModelBundle(
        manifest=BundleManifest(
            model_name=model_name,
            encoder=encoder,
            feature_names=win_model.feature_names,
            products=dataset.context.products,
            regions=dataset.context.regions,
            history_end=dataset.context.history_end.isoformat(),
            training_rows=training_rows,
        ),
        win_model=win_model,
        index=PartnerIndex.build(dataset.context.partner_ids.tolist(), dataset.context.partner_vectors),
        history={
            spec.name: getattr(ecosystem, spec.name)
            for spec in (schema.PARTNERS, schema.DEALS, schema.OUTCOMES, schema.ENGAGEMENT)
        },
    )


def training_drift_reference(bundle: ModelBundle, train: PairFrame, window_end_seconds: int) -> DriftReference:
    """The drift reference of the training window (`models.drift`): decile profiles of each model
    feature and of the model's win probability on the train rows; the window runs from the history's
    first deal to `window_end_seconds` (Unix seconds, the last train deal)."""
    features = train.features[list(bundle.manifest.feature_names)]
    columns = {name: features[name].to_numpy() for name in features.columns}
    columns[PREDICTION_COLUMN] = bundle.win_model.predict_win_probability(features)
    window_start = pd.Timestamp(bundle.history[schema.DEALS.name][schema.CREATED_AT].min())
    window_end = pd.Timestamp(window_end_seconds, unit="s")
    return reference_of(columns, window_start.isoformat(), window_end.isoformat())


def log_and_register(
    run: tracking.Run,
    config: TrainConfig,
    embeddings: Embeddings,
    splits: TimeSplits,
    evaluation: Evaluation,
    bundle: ModelBundle,
    workdir: Path,
    extra_tags: Mapping[str, str] | None = None,
) -> RegisteredVersion:
    """Log params, metrics and figures on `run` and register the bundle as a new version (no alias),
    tagged with its encoder, features and `extra_tags`."""
    synthetic = evaluation.slates is not None
    run.log_params({"model": asdict(config.model), "split": asdict(config.split), "encoder": embeddings.encoder})
    run.log_params({"ecosystem": asdict(config.ecosystem)} if synthetic else {"data": "external"})
    run.log_metrics({"test": evaluation.metrics, "val": evaluation.validation})
    win_model = bundle.win_model
    test_probabilities = win_model.predict_win_probability(splits.test.features)
    for figure_path in plots.training_figures(
        win_model, splits.test.labels, test_probabilities, evaluation.slates, workdir
    ):
        run.log_artifact(figure_path, "figures")
    feature_names = bundle.manifest.feature_names
    bundle_dir = bundle.save(workdir / "bundle")
    training_drift_reference(bundle, splits.train, int(splits.boundaries[0])).save(bundle_dir)
    return tracking.register_bundle(
        run,
        bundle_dir,
        REGISTERED_WIN_MODEL,
        feature_names,
        {ENCODER_TAG: config.encoder, FEATURES_TAG: ",".join(feature_names)} | dict(extra_tags or {}),
    )


def _champion_features(champion: RegisteredVersion) -> tuple[str, ...]:
    """The champion's feature list from its version tag (readable when its bundle is not)."""
    listed = champion.tags.get(FEATURES_TAG, "")
    if not listed:
        raise ValueError(f"version tag {FEATURES_TAG!r} is missing")
    return tuple(listed.split(","))


def refit_champion(
    paths: Paths, champion: RegisteredVersion, feature_names: tuple[str, ...], splits: TimeSplits
) -> WinModelTrainer:
    """The champion's configuration (its run's logged model params) fitted on these training windows,
    with those of `feature_names` the data has. Raises ValueError when it cannot be rebuilt."""
    config = config_from_params(WinModelConfig(), run_params(paths, champion.run_id), MODEL_PARAMS_PREFIX)
    usable = tuple(name for name in feature_names if name in splits.train.features.columns)
    if not usable:
        raise ValueError("none of its features is in this data")
    return WinModelTrainer(config, feature_names=usable).fit(splits.train, splits.calibration)


def _validation_score(model: WinModel | WinProbabilityModel, validation: PairFrame, metric: str) -> float:
    probabilities = model.predict_win_probability(validation.features)
    return evaluate.binary_metrics(validation.labels, probabilities)[metric]


def score_champion(
    paths: Paths, champion: RegisteredVersion, config: TrainConfig, splits: TimeSplits, workdir: Path
) -> ChampionScore:
    """The champion's promotion metric on the validation rows: from its own bundle when it can serve
    this data, else from its configuration refit on the same training windows (score None when that
    is impossible too). Raises RegistryError when the store cannot be read."""
    bundle_dir = download_bundle(paths, champion, workdir / "champion")
    validation = splits.validation
    reasons: list[str] = []
    feature_names: tuple[str, ...] | None = None
    try:
        bundle = ModelBundle.load(bundle_dir, with_history=False)
    except UNREADABLE_BUNDLE as error:
        reasons.append(f"its bundle cannot be read ({one_line(error)})")
    else:
        feature_names = bundle.manifest.feature_names
        missing = [name for name in feature_names if name not in validation.features.columns]
        if missing:
            reasons.append(f"it needs features this data lacks ({', '.join(missing)})")
        if bundle.manifest.encoder != config.encoder:
            reasons.append(f"it embeds texts with {bundle.manifest.encoder}, this data with {config.encoder}")
        if not reasons:
            score = _validation_score(bundle.win_model, validation, config.promotion_metric)
            return ChampionScore(champion.version, score, "scored by its own bundle")
    why = f"champion v{champion.version}: " + "; ".join(reasons)
    try:
        refit = refit_champion(paths, champion, feature_names or _champion_features(champion), splits)
    except ValueError as error:
        return ChampionScore(champion.version, None, f"{why}; its configuration cannot be refit ({error})")
    score = _validation_score(refit, validation, config.promotion_metric)
    return ChampionScore(champion.version, score, f"{why}; scored by its configuration refit on this data")


def decide_promotion(
    metric: str, new_score: float, champion: ChampionScore | None, scored_on: str = "validation"
) -> tuple[bool, str]:
    """(promote?, why in words): promote when there is no champion or the new version is strictly
    better on `metric` (both scored on the `scored_on` rows); never when the champion could not be compared."""
    if champion is None:
        return True, "no champion was registered: this version becomes the champion"
    if champion.score is None:
        return False, f"not compared, {champion.basis}: champion v{champion.version} kept, this version is challenger"
    better = new_score < champion.score if metric in LOWER_IS_BETTER else new_score > champion.score
    comparison = (
        f"{scored_on} {metric} {new_score:.4f} vs champion v{champion.version} {champion.score:.4f} ({champion.basis})"
    )
    if better:
        return True, f"{comparison}: promoted to champion"
    return False, f"{comparison}: not better, kept as challenger"


def promote(
    run: tracking.Run,
    paths: Paths,
    config: TrainConfig,
    version: RegisteredVersion,
    splits: TimeSplits,
    evaluation: Evaluation,
    workdir: Path,
) -> Promotion:
    """Read the champion again, compare, then move `champion` to `version` or make it `challenger`;
    the comparison and the decision are logged on `run` (param `champion_comparison`, tag `decision`)."""
    champion = current_champion(paths)
    score = score_champion(paths, champion, config, splits, workdir) if champion is not None else None
    new_score = evaluation.validation[WinModelTrainer.name][config.promotion_metric]
    promoted, decision = decide_promotion(config.promotion_metric, new_score, score)
    run.log_params({"champion_comparison": score.basis if score is not None else "no champion registered"})
    validation = evaluation.validation[WinModelTrainer.name]
    alias = tracking.mark_version(paths, REGISTERED_WIN_MODEL, version.version, promoted, decision, validation)
    return Promotion(
        alias=alias,
        promoted=promoted,
        champion_before=champion.version if champion is not None else None,
        decision=decision,
    )


def run_training(
    config: TrainConfig,
    paths: Paths,
    ecosystem: schema.Ecosystem,
    truth: GroundTruth | None = None,
    progress: Progress = SILENT,
    dask_scheduler: str | None = None,
) -> TrainReport:
    """Every stage in order inside one MLflow run (marked FAILED if a stage raises); the win model's
    LightGBM on the Dask cluster at `dask_scheduler` when given."""
    champion = current_champion(paths)
    progress.step(f"registry readable; champion: {f'v{champion.version}' if champion else 'none yet'}")
    encoder = make_encoder(config.encoder, paths.cache_dir)
    with tempfile.TemporaryDirectory() as tmp, tracking.start_run(paths, RUN_NAME) as run:
        embeddings = embed_ecosystem(ecosystem, encoder, progress)
        dataset = build_dataset(ecosystem, embeddings, progress)
        splits = time_split(dataset, config.split)
        fitted = fit_models(config.model, splits, progress=progress, dask_scheduler=dask_scheduler)
        evaluation = evaluate_fitted(fitted, splits, dataset, ecosystem, truth, config.evaluation, progress)
        progress.step("logging to MLflow and registering the model")
        bundle = make_bundle(config, dataset, ecosystem, fitted, splits)
        version = log_and_register(run, config, embeddings, splits, evaluation, bundle, Path(tmp))
        progress.step("comparing with the champion")
        promotion = promote(run, paths, config, version, splits, evaluation, Path(tmp))
    return TrainReport(
        metrics=evaluation.metrics,
        validation=evaluation.validation,
        version=version,
        alias=promotion.alias,
        promoted=promotion.promoted,
        champion_before=promotion.champion_before,
        decision=promotion.decision,
        model=bundle.win_model,
    )
