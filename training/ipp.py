"""Fitting half of the ideal-partner-profile model: learned from realised partner performance.

Target: a partner's realised first-year win rate (`features.performance.first_year_performance`,
smoothed towards the ecosystem rate), what a recruiter can observe. Features: only what is known at
signing (`models.ipp`: certifications, products, regions, declared capacity, the tenure at which the
measured year began, and profile similarity to top performers, leaving the partner itself out).

Split by partner and time: the latest-signed `test_cohort_share` of partners is held out (never a
training row, never a reference top performer); the latest-signed training partners stop the
boosting early. On a synthetic ecosystem the held-out partners are also ranked against their latent
quality (the generator's true win probability on typical deals in their regions, evaluation only).
Baselines in the same run: `centroid_similarity` (cosine to the centroid of top performers) and
`attribute_rubric` (hand-weighted certifications, regions and size). Registered as `partnermatch-ipp`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema

from features import schema
from features.embed import Encoder, make_encoder
from features.pairs import product_mask
from features.performance import (
    ATTEMPTS,
    COMPLETE,
    DAYS_TO_FIRST_WIN,
    FIRST_WIN_SEEN,
    MEASURED_DAYS,
    MEASURED_FROM,
    PRIOR_STRENGTH,
    PRODUCT,
    SIGNED_IN_HISTORY,
    TENURE_AT_START,
    WIN_RATE,
    attempts_table,
    explode_cells,
    first_year_performance,
    white_space,
    win_rates_by,
)
from features.progress import SILENT, Progress
from features.prospects import partners_as_prospects
from features.synthetic import EcosystemConfig, GroundTruth, true_win_logit
from models.ipp import (
    BOTTOM_GROUP,
    FEATURE_NAMES,
    MANIFEST_FILE,
    TOP_GROUP,
    FirstWinBands,
    IppModel,
    ReferenceSet,
    deal_flow_matrix,
    product_group,
    prospect_features,
    region_group,
)
from models.registry import (
    BUNDLE_ARTIFACT,
    CHAMPION,
    REGISTERED_IPP_MODEL,
    Paths,
    RegisteredVersion,
    local_bundle,
    version_by_alias,
)
from training.evaluate import bootstrap_interval, spearman
from training.tracking import Run, mark_version, start_run
from training.workflows import demo_ecosystem, load_ecosystem_directory

MODEL_ARTIFACT = "ipp_model"
PIP_REQUIREMENTS = ["lightgbm", "numpy", "pandas", "faiss-cpu"]
ENCODE_BATCH = 256
LATENT_REFERENCE_DEALS = 400  # typical deals per ecosystem for the latent quality
LATENT_TENURE_DAYS = 3650.0  # latent quality is judged past the new-partner ramp-up
# The attribute rubric's hand weights: per certified product, per mean level, per region, per e-fold of capacity.
RUBRIC_WEIGHTS = {"certified_products": 1.0, "mean_certification_level": 1.0, "regions": 0.3, "log_capacity": 0.5}


@dataclass(frozen=True)
class IppConfig:
    """Data, split, reference groups and LightGBM settings of the IPP model."""

    ecosystem: EcosystemConfig = field(default_factory=lambda: EcosystemConfig(partners=4000, deals=40000))
    encoder: str = "minilm-onnx-int8"
    test_cohort_share: float = 0.25  # latest-signed partners held out for evaluation
    early_stopping_share: float = 0.15  # latest-signed training partners that stop the boosting
    top_share: float = 0.25  # top (and bottom) performers: this share of the reference partners
    min_attempts: int = 5  # attempts in the measured year for a training row or a reference partner
    min_group_attempts: int = 3  # attempts on a product (region) to rank a partner there
    first_win_bands: int = 5
    n_estimators: int = 400
    learning_rate: float = 0.03
    num_leaves: int = 7
    min_child_samples: int = 30
    subsample: float = 0.8
    colsample_bytree: float = 0.9
    early_stopping_rounds: int = 40
    bootstrap_resamples: int = 1000
    threads: int = 1  # small data: a second OpenMP thread only contends on a shared machine
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("test_cohort_share", "early_stopping_share", "top_share"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")


@dataclass(frozen=True)
class IppReport:
    metrics: dict[str, Any]
    model: IppModel
    version: RegisteredVersion
    alias: str  # champion or challenger


# --- evaluation-only truth ----------------------------------------------------------------------


def latent_quality(truth: GroundTruth, ecosystem: schema.Ecosystem, seed: int = 0) -> np.ndarray:
    """(n,) per partner (truth order) in (0, 1): its true solo win probability averaged over a fixed
    sample of the ecosystem's deals in the regions it operates in, past ramp-up, without load and
    outside disengagement. Evaluation only: a recruiter never sees it."""
    sample = ecosystem.deals.sample(min(LATENT_REFERENCE_DEALS, len(ecosystem.deals)), random_state=seed)
    products = product_mask(sample[schema.DEAL_PRODUCTS], schema.PRODUCTS)
    region_codes = pd.Index(schema.REGIONS).get_indexer(sample[schema.DEAL_REGION])
    amounts = sample[schema.AMOUNT].to_numpy(dtype=np.float64)
    partners = len(truth.partner_ids)
    totals, counts = np.zeros(partners), np.zeros(partners)
    long_ago = 0  # seconds since 1970 (as `true_win_logit` takes times): before any disengagement episode
    for region in range(len(schema.REGIONS)):
        deals = np.flatnonzero(region_codes == region)
        operating = np.flatnonzero(truth.region_skill[:, region] >= 0)
        if deals.size == 0 or operating.size == 0:
            continue
        pair_partner = np.repeat(operating, deals.size)
        pair_deal = np.tile(deals, operating.size)
        logit = true_win_logit(
            truth,
            pair_partner,
            products[pair_deal],
            region_codes[pair_deal].astype(np.int64),
            amounts[pair_deal],
            np.full(pair_deal.size, long_ago, dtype=np.int64),
            np.zeros(pair_deal.size),
            np.full(pair_deal.size, LATENT_TENURE_DAYS),
        )
        np.add.at(totals, pair_partner, 1.0 / (1.0 + np.exp(-logit)))
        np.add.at(counts, pair_partner, 1.0)
    return totals / np.maximum(counts, 1.0)


# --- pure pieces --------------------------------------------------------------------------------


def kaplan_meier_median(durations: np.ndarray, events: np.ndarray) -> float:
    """Median of a right-censored duration (Kaplan-Meier): the first time survival falls to <= 0.5;
    NaN when it never does. `events` (n,) bool: True where the duration ended in the event."""
    order = np.argsort(durations, kind="stable")
    times, happened = np.asarray(durations, float)[order], np.asarray(events, bool)[order]
    survival, at_risk = 1.0, times.size
    for time, event in zip(times.tolist(), happened.tolist(), strict=True):
        if event:
            survival *= 1.0 - 1.0 / at_risk
            if survival <= 0.5:
                return float(time)
        at_risk -= 1
    return float("nan")


def first_win_bands(expected: np.ndarray, durations: np.ndarray, events: np.ndarray, bands: int) -> FirstWinBands:
    """Kaplan-Meier median days to a first win per quantile band of expected win rate."""
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bands + 1)[1:-1])) if expected.size else np.array([])
    band = np.searchsorted(edges, expected, side="right")
    medians = tuple(kaplan_meier_median(durations[band == b], events[band == b]) for b in range(edges.size + 1))
    return FirstWinBands(
        edges=tuple(edges.tolist()), median_days=medians, observed_days=float(durations.max(initial=0.0))
    )


def build_reference(
    partner_ids: np.ndarray,
    vectors: np.ndarray,
    win_rates: np.ndarray,
    measured_attempts: pd.DataFrame,
    config: IppConfig,
) -> ReferenceSet:
    """Top and bottom performers overall (by `win_rates`, (m,)) and top performers per product and
    region (by the smoothed win rate on the `measured_attempts` of that product or region, among
    partners with enough attempts there) of the m reference partners."""
    ranks = pd.Series(win_rates).rank(pct=True).to_numpy()
    groups: dict[str, np.ndarray] = {
        TOP_GROUP: np.flatnonzero(ranks > 1.0 - config.top_share),
        BOTTOM_GROUP: np.flatnonzero(ranks <= config.top_share),
    }
    position = pd.Series(np.arange(len(partner_ids)), index=partner_ids)
    for key, frame, name in (
        (PRODUCT, explode_cells(measured_attempts), product_group),
        (schema.DEAL_REGION, measured_attempts, region_group),
    ):
        rates = win_rates_by(frame, key)
        rates = rates[rates[ATTEMPTS] >= config.min_group_attempts]
        for value, members in rates.groupby(key):
            cut = members[WIN_RATE].quantile(1.0 - config.top_share)
            top = members.loc[members[WIN_RATE] > cut, schema.PARTNER_ID]
            groups[name(str(value))] = np.sort(position[top].to_numpy())
    return ReferenceSet(
        partner_ids=np.asarray(partner_ids, dtype=str), vectors=vectors, win_rates=win_rates, groups=groups
    )


def rubric_score(features: np.ndarray) -> np.ndarray:
    """(n,) the hand-weighted attribute rubric over `FEATURE_NAMES`-ordered features."""
    weights = np.array([RUBRIC_WEIGHTS.get(name, 0.0) for name in FEATURE_NAMES])
    return np.nan_to_num(features, nan=0.0) @ weights


def centroid_similarity(vectors: np.ndarray, reference: ReferenceSet) -> np.ndarray:
    """(n,) cosine of each vector to the normalised centroid of the top performers."""
    centroid = reference.vectors[reference.groups[TOP_GROUP]].mean(axis=0)
    return vectors @ (centroid / max(float(np.linalg.norm(centroid)), 1e-12))


def encode(encoder: Encoder, texts: Sequence[str], progress: Progress = SILENT) -> np.ndarray:
    """(n, d) float32 embeddings of `texts` in batches, reporting `progress.count`."""
    parts = []
    for start in range(0, len(texts), ENCODE_BATCH):
        parts.append(encoder.encode(list(texts[start : start + ENCODE_BATCH])))
        progress.count(min(start + ENCODE_BATCH, len(texts)), len(texts))
    return np.vstack(parts) if parts else np.zeros((0, encoder.dimension), dtype=np.float32)


# --- the flow -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Split:
    train: np.ndarray  # positions in the partners table
    early_stopping: np.ndarray
    test: np.ndarray  # every held-out partner (latent evaluation)
    test_measured: np.ndarray  # held-out partners with a complete measured year (realised evaluation)


def split_partners(performance: pd.DataFrame, joined_at: pd.Series, config: IppConfig) -> _Split:
    """Hold out the latest-signed partners; of the rest, those with a complete measured year and
    enough attempts are rows, the latest-signed of them for early stopping."""
    cut = joined_at.quantile(1.0 - config.test_cohort_share)
    measured = (performance[COMPLETE] & (performance[ATTEMPTS] >= config.min_attempts)).to_numpy()
    held_out = (joined_at >= cut).to_numpy()
    rows = np.flatnonzero(measured & ~held_out)
    rows = rows[np.argsort(joined_at.to_numpy()[rows], kind="stable")]
    stop = round(rows.size * (1.0 - config.early_stopping_share))
    test = np.flatnonzero(held_out)
    return _Split(
        train=np.sort(rows[:stop]),
        early_stopping=np.sort(rows[stop:]),
        test=test,
        test_measured=test[measured[test]],
    )


def _with_interval(name: str, scores: np.ndarray, target: np.ndarray, config: IppConfig) -> dict[str, float]:
    low, high = bootstrap_interval(
        lambda rows: spearman(scores[rows], target[rows]),
        np.arange(target.size),
        resamples=config.bootstrap_resamples,
        seed=config.seed,
    )
    return {name: spearman(scores, target), f"{name}_low": low, f"{name}_high": high}


@dataclass(frozen=True)
class IppFit:
    model: IppModel
    metrics: dict[str, Any]
    held_out: pd.DataFrame  # held-out partners with a measured year: the partners rows and WIN_RATE


def _paired_gain(
    model: np.ndarray,
    baseline: np.ndarray,
    measured: np.ndarray,
    realised: np.ndarray,
    latent: np.ndarray | None,
    split: _Split,
    config: IppConfig,
) -> dict[str, float]:
    """Spearman of the model minus that of a baseline on the same held-out partners, with a paired
    bootstrap interval (both systems scored on each resample): the model beats the baseline when
    `_low` > 0."""

    def gain(scores_a: np.ndarray, scores_b: np.ndarray, target: np.ndarray, name: str) -> dict[str, float]:
        low, high = bootstrap_interval(
            lambda rows: spearman(scores_a[rows], target[rows]) - spearman(scores_b[rows], target[rows]),
            np.arange(target.size),
            resamples=config.bootstrap_resamples,
            seed=config.seed,
        )
        return {name: spearman(scores_a, target) - spearman(scores_b, target), f"{name}_low": low, f"{name}_high": high}

    gains = gain(model[measured], baseline[measured], realised, "realised_spearman")
    if latent is not None:
        gains |= gain(model, baseline, latent[split.test], "latent_spearman")
    return gains


def fit_ipp(
    ecosystem: schema.Ecosystem,
    encoder: Encoder,
    config: IppConfig,
    truth: GroundTruth | None = None,
    progress: Progress = SILENT,
) -> IppFit:
    """Fit the IPP model and its baselines on one ecosystem; evaluate on held-out partners.
    `encoder` is the one `config.encoder` names (the model records that name).

    Metrics: per system (`model`, `centroid_similarity`, `attribute_rubric`) the Spearman
    correlation on held-out partners with their realised first-year win rate (`realised_spearman`)
    and, with `truth`, with their latent quality (`latent_spearman`), each with a seeded bootstrap
    95% interval over partners (`_low`, `_high`); `realised_win_rate` shows how well the realised
    target itself tracks the latent quality; plus row counts.
    """
    partners = ecosystem.partners.reset_index(drop=True)
    performance = first_year_performance(ecosystem)
    split = split_partners(performance, partners[schema.JOINED_AT], config)
    progress.step(
        f"IPP split: {split.train.size} training, {split.early_stopping.size} early-stopping, "
        f"{split.test.size} held-out partners"
    )
    prospects = partners_as_prospects(partners)
    progress.step(f"embedding {len(prospects)} partner profiles with {encoder.name}")
    vectors = encode(encoder, [prospect.profile_text for prospect in prospects], progress)

    attempts = attempts_table(ecosystem)
    start = attempts[schema.PARTNER_ID].map(performance.set_index(schema.PARTNER_ID)[MEASURED_FROM])
    in_year = (attempts[schema.CREATED_AT] >= start) & (
        attempts[schema.CREATED_AT] < start + pd.Timedelta(days=MEASURED_DAYS)
    )
    reference_rows = np.concatenate([split.train, split.early_stopping])
    reference_ids = partners[schema.PARTNER_ID].to_numpy()[reference_rows]
    target = performance[WIN_RATE].to_numpy()
    reference = build_reference(
        reference_ids,
        vectors[reference_rows],
        target[reference_rows],
        attempts[in_year & attempts[schema.PARTNER_ID].isin(reference_ids)],
        config,
    )
    tenure = performance[TENURE_AT_START].to_numpy()
    ids = partners[schema.PARTNER_ID].tolist()
    progress.step("white space: product x region cells by unmet demand")
    space = white_space(ecosystem)
    deal_flow = deal_flow_matrix(space)

    def features(rows: np.ndarray, tenure_days: np.ndarray | None) -> np.ndarray:
        return prospect_features(
            [prospects[row] for row in rows],
            vectors[rows],
            reference,
            deal_flow,
            tenure_days,
            [ids[row] for row in rows],
        )

    progress.step("similarity features (exact cosine; each partner is left out of its own reference groups)")
    train_x = features(split.train, tenure[split.train])
    stop_x = features(split.early_stopping, tenure[split.early_stopping])
    everyone = features(np.arange(len(partners)), None)  # tenure 0: as if each partner signed today
    progress.step(f"fitting LightGBM on {split.train.size} partners")
    booster = _fit_booster(
        config,
        (train_x, stop_x),
        (target[split.train], target[split.early_stopping]),
        (
            _precision_weights(performance[ATTEMPTS].to_numpy()[split.train]),
            _precision_weights(performance[ATTEMPTS].to_numpy()[split.early_stopping]),
        ),
    )
    model = IppModel(
        booster=booster,
        reference=reference,
        encoder=config.encoder,
        partner_scores=np.zeros(0),
        first_win=FirstWinBands(edges=(), median_days=(float("nan"),), observed_days=0.0),
        white_space=pd.DataFrame(),
    )
    expected = model.predict(everyone)
    observed = np.flatnonzero(performance[SIGNED_IN_HISTORY].to_numpy())
    observed = observed[~np.isin(observed, split.test)]
    progress.step("first-win bands")
    model = replace(
        model,
        partner_scores=np.sort(expected),
        first_win=first_win_bands(
            expected[observed],
            performance[DAYS_TO_FIRST_WIN].to_numpy()[observed],
            performance[FIRST_WIN_SEEN].to_numpy()[observed],
            config.first_win_bands,
        ),
        white_space=space,
    )

    systems = {
        "model": expected[split.test],
        "centroid_similarity": centroid_similarity(vectors[split.test], reference),
        "attribute_rubric": rubric_score(everyone[split.test]),
    }
    measured_in_test = np.isin(split.test, split.test_measured)
    latent = None
    if truth is not None:
        latent = latent_quality(truth, ecosystem, config.seed)[truth.positions(partners[schema.PARTNER_ID])]
    metrics: dict[str, Any] = {}
    for name, scores in systems.items():
        metrics[name] = _with_interval(
            "realised_spearman", scores[measured_in_test], target[split.test_measured], config
        )
        if latent is not None:
            metrics[name] |= _with_interval("latent_spearman", scores, latent[split.test], config)
    for baseline in ("centroid_similarity", "attribute_rubric"):
        metrics[f"model_minus_{baseline}"] = _paired_gain(
            systems["model"], systems[baseline], measured_in_test, target[split.test_measured], latent, split, config
        )
    if latent is not None:
        metrics["realised_win_rate"] = _with_interval(
            "latent_spearman", target[split.test_measured], latent[split.test_measured], config
        )
    metrics["rows"] = {
        "partners": len(partners),
        "train": int(split.train.size),
        "early_stopping": int(split.early_stopping.size),
        "test": int(split.test.size),
        "test_measured": int(split.test_measured.size),
        "trees": booster.num_trees(),
        "top_performers": int(reference.groups[TOP_GROUP].size),
    }
    held_out = partners.iloc[split.test_measured].assign(**{WIN_RATE: target[split.test_measured]})
    return IppFit(model=model, metrics=metrics, held_out=held_out.reset_index(drop=True))


def _precision_weights(attempts: np.ndarray) -> np.ndarray:
    """Row weights in [0, 1): attempts / (attempts + PRIOR_STRENGTH), how much a win rate can be trusted."""
    return attempts / (attempts + PRIOR_STRENGTH)


def _fit_booster(
    config: IppConfig,
    features: tuple[np.ndarray, np.ndarray],
    targets: tuple[np.ndarray, np.ndarray],
    weights: tuple[np.ndarray, np.ndarray],
) -> lgb.Booster:
    """LightGBM regression on (train, early-stopping) rows; the returned booster holds the best trees."""
    params = {
        "objective": "regression",
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": config.min_child_samples,
        "bagging_fraction": config.subsample,
        "bagging_freq": 1,
        "feature_fraction": config.colsample_bytree,
        "num_threads": config.threads,
        "seed": config.seed,
        "deterministic": True,
        "verbosity": -1,
    }
    train_set = lgb.Dataset(features[0], targets[0], weight=weights[0], feature_name=list(FEATURE_NAMES))
    stop_set = lgb.Dataset(features[1], targets[1], weight=weights[1], reference=train_set)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=config.n_estimators,
        valid_sets=[stop_set],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))


class _IppPyfunc(PythonModel):
    """pyfunc face: predict(frame of FEATURE_NAMES floats) -> expected first-year win rate."""

    def load_context(self, context: Any) -> None:
        self.model = IppModel.load(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        return self.model.predict(model_input[list(self.model.feature_names)].to_numpy(dtype=np.float32))


def register_model_directory(run: Run, model_dir: Path, feature_names: Sequence[str]) -> RegisteredVersion:
    """Log `model_dir` as a pyfunc model (features in, expected win rate out) and register a new
    version of `partnermatch-ipp`."""
    info = mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT,
        python_model=_IppPyfunc(),
        artifacts={BUNDLE_ARTIFACT: str(model_dir)},
        signature=ModelSignature(
            inputs=Schema([ColSpec("float", name) for name in feature_names]),
            outputs=Schema([ColSpec("double", "expected_win_rate")]),
        ),
        pip_requirements=PIP_REQUIREMENTS,
        registered_model_name=REGISTERED_IPP_MODEL,
    )
    return RegisteredVersion(
        name=REGISTERED_IPP_MODEL, version=str(info.registered_model_version), run_id=run.run_id, aliases=()
    )


def _champion_spearman(paths: Paths, held_out: pd.DataFrame) -> float | None:
    """The current champion's realised Spearman on the same held-out partners; None without a champion."""
    champion = version_by_alias(paths, REGISTERED_IPP_MODEL, CHAMPION)
    if champion is None:
        return None
    model = IppModel.load(local_bundle(paths, champion))
    prospects = partners_as_prospects(held_out)
    vectors = encode(make_encoder(model.encoder, paths.cache_dir), [prospect.profile_text for prospect in prospects])
    return spearman(model.predict(model.features(prospects, vectors)), held_out[WIN_RATE].to_numpy())


def train_ipp(
    config: IppConfig,
    paths: Paths,
    ecosystem: schema.Ecosystem,
    truth: GroundTruth | None = None,
    progress: Progress = SILENT,
) -> IppReport:
    """Fit, evaluate, log one MLflow run with the baselines, register `partnermatch-ipp` and move
    `champion` when the new version's realised Spearman on the held-out partners is at least the
    champion's on the same partners (else it becomes `challenger`)."""
    fit = fit_ipp(ecosystem, make_encoder(config.encoder, paths.cache_dir), config, truth, progress)
    progress.step("logging to MLflow and registering partnermatch-ipp")
    champion = _champion_spearman(paths, fit.held_out)
    with tempfile.TemporaryDirectory(prefix="ipp-") as scratch, start_run(paths, "ipp") as run:
        model_dir = fit.model.save(Path(scratch) / BUNDLE_ARTIFACT)  # the folder name is the artifact path
        run.log_params({"ipp": {key: value for key, value in asdict(config).items() if key != "ecosystem"}})
        run.log_params({"ecosystem": asdict(config.ecosystem)})
        run.log_metrics(fit.metrics)
        run.log_artifact(model_dir / MANIFEST_FILE, "ipp")
        version = register_model_directory(run, model_dir, fit.model.feature_names)
    new = fit.metrics["model"]["realised_spearman"]
    # A champion without a defined score (constant predictions) yields to any version; an undefined one never wins.
    promoted = champion is None or np.isnan(champion) or bool(new >= champion)
    metrics = fit.metrics | {"promotion": {"champion_realised_spearman": champion, "promoted": promoted}}
    comparison = f"realised Spearman {new:.4f} vs champion {'none' if champion is None else f'{champion:.4f}'}"
    decision = f"{comparison}: {'promoted to champion' if promoted else 'lower, kept as challenger'}"
    alias = mark_version(paths, REGISTERED_IPP_MODEL, version.version, promoted, decision, metrics)
    return IppReport(metrics=metrics, model=fit.model, version=version, alias=alias)


def train_ipp_from_options(
    config: IppConfig, paths: Paths, data_dir: Path | None, progress: Progress = SILENT
) -> IppReport:
    """`train_ipp` on an ecosystem directory (its ground truth too, when it has one) or on the demo
    ecosystem of `config.ecosystem` (generated once, cached)."""
    if data_dir is not None:
        ecosystem, truth = load_ecosystem_directory(data_dir)
    else:
        ecosystem, truth = demo_ecosystem(config.ecosystem, paths, progress)
    return train_ipp(config, paths, ecosystem, truth, progress)
