"""Fit, evaluate and register partner health (`partnermatch-health`, inference half in `models.health`).

Recipe on a synthetic ecosystem with its ground truth:
1. Every message is scored by the sentiment model (polarity, frustration).
2. Rows: every partner every `step_days` (`HealthConfig`), features as of that time
   (`features.health`, point in time); label: a disengagement episode of the truth starts within
   the next 90 days. Rows already inside an episode are dropped (they are disengaged, not at risk).
3. Partners are split by id hash (train | calibration | test) and rows by time (train and
   calibration labels end before the cut, test rows start after it): grouped and time-ordered.
4. LightGBM on the features; its margin is calibrated on the calibration partners
   (`models.calibration.select_calibrator`, grouped by partner).
5. The health score's component weights come from a logistic regression on the training rows;
   band cut-offs are score quantiles of the training rows: `at_risk` holds the share of rows that
   do disengage (the base rate p), `watch` the next (watch_multiple - 1) x p. A partner-bootstrap of
   the training rows reports how much the cut-offs move and how many test rows change band.
6. Baseline: the engagement-decline rule (alert when the last 30 days' engagement rate is at most
   `rule_decline_ratio` of the 90 days before; its ranking score is minus the engagement trend).
   The model's alert threshold gives it the rule's alert rate on training rows, so the lead-time
   and detection comparison is at equal alarm volume. The ROC-AUC difference model - rule on the
   test rows comes with a 95% bootstrap interval that resamples test partners.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema
from sklearn.linear_model import LogisticRegression

from features import schema
from features.health import (
    AS_OF,
    DISENGAGEMENT_FEATURES,
    DISENGAGEMENT_MONOTONE,
    ENGAGEMENT_TREND,
    HEALTH_REASONS,
    MessageScores,
    as_of_rows,
    health_features,
)
from features.kpis import (
    COHORT,
    RECOMMENDATION,
    TierThresholds,
    competency_factors,
    factor_spread,
    median_by,
    recommend_tiers,
    tier_metrics,
    tier_summary,
    time_to_competency,
)
from features.pairs import SECONDS_PER_DAY, to_seconds
from features.progress import SILENT, Progress
from features.sentiment_data import SENTIMENT_CLASSES, held_out
from features.synthetic import GroundTruth
from features.synthetic.truth import EPISODE_START
from models.calibration import Calibrator, select_calibrator
from models.health import (
    BANDS,
    COMPONENTS,
    HISTORY_MONTHS,
    HISTORY_SERIES,
    HORIZON_DAYS,
    HealthModel,
    HealthScorer,
)
from models.registry import (
    BUNDLE_ARTIFACT,
    CHAMPION,
    REGISTERED_HEALTH_MODEL,
    REGISTERED_SENTIMENT_MODEL,
    Paths,
    RegisteredVersion,
    local_bundle,
    version_by_alias,
)
from models.sentiment import SentimentModel
from models.win import WinModel
from training import tracking
from training.config import HealthConfig
from training.evaluate import binary_metrics, grouped_difference_interval, roc_auc
from training.workflows import demo_ecosystem, load_ecosystem_directory

LABEL = "disengages_90d"
_POSITIVE, _NEGATIVE = SENTIMENT_CLASSES.index("positive"), SENTIMENT_CLASSES.index("negative")


def score_messages(
    ecosystem: schema.Ecosystem, model: SentimentModel, batch_size: int = 256, progress: Progress = SILENT
) -> MessageScores:
    """The sentiment model's polarity and frustration for every communications row, in batches."""
    texts = ecosystem.communications[schema.MESSAGE_TEXT].astype(str).tolist()
    polarity, frustration = np.empty(len(texts)), np.empty(len(texts))
    for start in range(0, len(texts), batch_size):
        progress.count(start, len(texts))
        prediction = model.predict(texts[start : start + batch_size])
        rows = slice(start, start + len(prediction.labels))
        polarity[rows] = prediction.probabilities[:, _POSITIVE] - prediction.probabilities[:, _NEGATIVE]
        frustration[rows] = prediction.frustration
    progress.count(len(texts), len(texts))
    return MessageScores(polarity=polarity, frustration=frustration)


def snapshot_time(ecosystem: schema.Ecosystem) -> pd.Timestamp:
    """One second after the last deal, engagement event or message: every event counts before it."""
    latest = max(
        ecosystem.deals[schema.CREATED_AT].max(),
        ecosystem.engagement[schema.OCCURRED_AT].max(),
        ecosystem.communications[schema.SENT_AT].max(),
    )
    return pd.Timestamp(latest) + pd.Timedelta(seconds=1)


def labelled_rows(ecosystem: schema.Ecosystem, truth: GroundTruth, config: HealthConfig) -> pd.DataFrame:
    """(PARTNER_ID, AS_OF, LABEL) for every partner signed 30+ days before each as-of time, not inside
    an episode then, as-of times every `step_days` with the full horizon observed."""
    start = ecosystem.deals[schema.CREATED_AT].min() + pd.Timedelta(days=config.warmup_days)
    end = snapshot_time(ecosystem) - pd.Timedelta(days=HORIZON_DAYS)
    times = pd.date_range(start, end, freq=f"{config.step_days}D")
    rows = as_of_rows(ecosystem.partners[schema.PARTNER_ID].to_numpy(), list(times))
    joined = rows[schema.PARTNER_ID].map(ecosystem.partners.set_index(schema.PARTNER_ID)[schema.JOINED_AT])
    rows = rows[(rows[AS_OF] - joined) >= pd.Timedelta(days=30)].reset_index(drop=True)
    positions, seconds = truth.positions(rows[schema.PARTNER_ID]), to_seconds(rows[AS_OF])
    inside = truth.episodes.inside(positions, seconds)
    days_to_next = truth.episodes.days_to_next_start(positions, seconds)
    rows[LABEL] = (days_to_next <= HORIZON_DAYS).astype(np.int64)
    return rows[~inside].reset_index(drop=True)


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # (n,) bool masks over the labelled rows
    calibration: np.ndarray
    test: np.ndarray
    cut: pd.Timestamp


def split_rows(rows: pd.DataFrame, ecosystem: schema.Ecosystem, config: HealthConfig) -> Split:
    """Partner-grouped (id hash) and time-ordered (labels of train and calibration rows end before the cut)."""
    history_start = ecosystem.deals[schema.CREATED_AT].min()
    cut = history_start + (snapshot_time(ecosystem) - history_start) * config.train_until_share
    ids = rows[schema.PARTNER_ID].astype(str).tolist()
    test_partner = held_out(ids, config.test_share, "health-test")
    calibration_partner = held_out(ids, config.calibration_share, "health-calibration") & ~test_partner
    before = (rows[AS_OF] + pd.Timedelta(days=HORIZON_DAYS) <= cut).to_numpy()
    after = (rows[AS_OF] >= cut).to_numpy()
    return Split(
        train=before & ~test_partner & ~calibration_partner,
        calibration=before & calibration_partner,
        test=after & test_partner,
        cut=cut,
    )


def fit_disengagement(
    features: pd.DataFrame, labels: np.ndarray, split: Split, groups: np.ndarray, config: HealthConfig
) -> tuple[WinModel, dict[str, Any]]:
    """LightGBM on the training rows, calibrated on the calibration rows; (model, calibration report)."""
    booster = lgb.train(
        {
            "objective": "binary",
            "learning_rate": config.learning_rate,
            "num_leaves": config.num_leaves,
            "min_child_samples": config.min_child_samples,
            "seed": config.seed,
            "verbosity": -1,
            "num_threads": 2,
            "lambda_l2": config.l2_regularisation,
            "monotone_constraints": [DISENGAGEMENT_MONOTONE[name] for name in DISENGAGEMENT_FEATURES],
        },
        lgb.Dataset(
            features.loc[split.train, list(DISENGAGEMENT_FEATURES)].to_numpy(dtype=np.float32),
            labels[split.train],
            feature_name=list(DISENGAGEMENT_FEATURES),
        ),
        num_boost_round=config.n_estimators,
    )
    uncalibrated = WinModel(booster, Calibrator("none"), DISENGAGEMENT_FEATURES, HEALTH_REASONS)
    margins = uncalibrated.raw_score(features[split.calibration])
    selection = select_calibrator(
        config.calibration, margins, labels[split.calibration], groups[split.calibration], seed=config.seed
    )
    model = WinModel(booster, selection.calibrator, DISENGAGEMENT_FEATURES, HEALTH_REASONS)
    return model, {"method": selection.calibrator.method, "cv_log_loss": selection.cv_log_loss}


def fit_scorer(features: pd.DataFrame, labels: np.ndarray, config: HealthConfig) -> HealthScorer:
    """Component weights from a logistic regression on the rows' percentiles, cut-offs from the rows' scores."""
    reference = {
        name: np.sort(features[feature].dropna().to_numpy(dtype=np.float64)) for name, feature in COMPONENTS.items()
    }
    provisional = HealthScorer(reference, dict.fromkeys(COMPONENTS, 1.0 / len(COMPONENTS)), 0.0, 0.0)
    components = provisional.components(features)
    regression = LogisticRegression(C=1.0).fit(components.to_numpy() / 100.0, labels)
    # A healthier percentile should lower the risk: only negative coefficients earn weight.
    raw = np.maximum(-regression.coef_[0], 0.0)
    weights = raw / raw.sum() if raw.sum() > 0 else np.full(raw.size, 1.0 / raw.size)
    weighted = HealthScorer(reference, dict(zip(COMPONENTS, map(float, weights), strict=True)), 0.0, 0.0)
    at_risk_below, watch_below = band_cutoffs(weighted.score(components), labels, config.watch_multiple)
    return HealthScorer(reference, weighted.weights, at_risk_below, watch_below)


def band_cutoffs(scores: np.ndarray, labels: np.ndarray, watch_multiple: float) -> tuple[float, float]:
    """(at_risk_below, watch_below): the score quantiles at the base rate p and at watch_multiple x p."""
    rate = float(np.mean(labels))
    return float(np.quantile(scores, rate)), float(np.quantile(scores, min(watch_multiple * rate, 1.0)))


def band_stability(
    scores: np.ndarray,
    labels: np.ndarray,
    partners: np.ndarray,
    test_scores: np.ndarray,
    scorer: HealthScorer,
    config: HealthConfig,
) -> dict[str, Any]:
    """Resample the training partners (with replacement) and recompute the cut-offs: their 5-95%
    range, and the mean share of test rows whose band differs from the fitted cut-offs' band."""
    rng = np.random.default_rng(config.seed)
    unique, inverse = np.unique(partners, return_inverse=True)
    rows_of = [np.flatnonzero(inverse == group) for group in range(unique.size)]
    fitted_bands = scorer.bands(test_scores)
    cutoffs, changed = [], []
    for _ in range(config.bootstrap_resamples):
        drawn = np.concatenate([rows_of[group] for group in rng.integers(0, unique.size, unique.size)])
        at_risk, watch = band_cutoffs(scores[drawn], labels[drawn], config.watch_multiple)
        cutoffs.append((at_risk, watch))
        resampled = HealthScorer(scorer.reference, scorer.weights, at_risk, watch)
        changed.append(float(np.mean(resampled.bands(test_scores) != fitted_bands)))
    values = np.array(cutoffs)
    return {
        "resamples": config.bootstrap_resamples,
        "at_risk_below_5_95": [float(np.percentile(values[:, 0], 5)), float(np.percentile(values[:, 0], 95))],
        "watch_below_5_95": [float(np.percentile(values[:, 1], 5)), float(np.percentile(values[:, 1], 95))],
        "test_rows_changing_band_mean": float(np.mean(changed)),
    }


def lead_times(rows: pd.DataFrame, alerts: np.ndarray, truth: GroundTruth, test: np.ndarray) -> dict[str, Any]:
    """Per disengagement episode whose 90-day run-up is covered by test rows: the earliest alerted
    as-of time in [start - 90 d, start) -> lead days. Median lead over detected episodes, detection rate."""
    test_rows = rows[test].assign(alert=alerts[test])
    start_seconds = to_seconds(truth.disengagement[EPISODE_START])
    first_test = to_seconds(test_rows[AS_OF]).min() if len(test_rows) else 0
    by_partner = {partner: group for partner, group in test_rows.groupby(schema.PARTNER_ID)}
    leads, episodes = [], 0
    for partner, start in zip(truth.disengagement[schema.PARTNER_ID], start_seconds, strict=True):
        group = by_partner.get(partner)
        if group is None or start - HORIZON_DAYS * SECONDS_PER_DAY < first_test:
            continue
        seconds = to_seconds(group[AS_OF])
        run_up = (seconds >= start - HORIZON_DAYS * SECONDS_PER_DAY) & (seconds < start)
        if not run_up.any():
            continue
        episodes += 1
        alerted = seconds[run_up & group["alert"].to_numpy()]
        if alerted.size:
            leads.append((start - alerted.min()) / SECONDS_PER_DAY)
    return {
        "episodes": episodes,
        "detected": len(leads),
        "detection_rate": len(leads) / episodes if episodes else float("nan"),
        "median_lead_days": float(np.median(leads)) if leads else float("nan"),
    }


@dataclass(frozen=True)
class HealthFit:
    model: HealthModel
    metrics: dict[str, Any]


def fit_health(
    ecosystem: schema.Ecosystem,
    truth: GroundTruth,
    scores: MessageScores,
    config: HealthConfig,
    progress: Progress = SILENT,
) -> HealthFit:
    """Fit and evaluate on the synthetic ecosystem (module docstring); the model carries the snapshot
    as of `snapshot_time` and the KPIs."""
    progress.step("building point-in-time partner rows")
    rows = labelled_rows(ecosystem, truth, config)
    features = health_features(ecosystem, scores, rows)
    labels = rows[LABEL].to_numpy()
    split = split_rows(rows, ecosystem, config)
    partners = rows[schema.PARTNER_ID].to_numpy()
    progress.step(f"fitting the disengagement model on {int(split.train.sum()):,} rows")
    disengagement, calibration = fit_disengagement(features, labels, split, partners, config)
    scorer = fit_scorer(features[split.train], labels[split.train], config)

    progress.step("evaluating on held-out partners after the time cut")
    probability = disengagement.predict_win_probability(features)
    health_score = scorer.score(scorer.components(features))
    rule_score = -features[ENGAGEMENT_TREND].to_numpy()
    rule_alerts = features[ENGAGEMENT_TREND].to_numpy() <= np.log(config.rule_decline_ratio)
    alert_rate = float(rule_alerts[split.train].mean())
    threshold = float(np.quantile(probability[split.train], 1.0 - alert_rate))
    model_alerts = probability >= threshold
    test_labels = labels[split.test]
    bands = scorer.bands(health_score[split.test])
    metrics: dict[str, Any] = {
        "model": binary_metrics(test_labels, probability[split.test])
        | {"alert_threshold": threshold, "false_alert_rate": float(model_alerts[split.test][test_labels == 0].mean())}
        | lead_times(rows, model_alerts, truth, split.test),
        "model_minus_rule_roc_auc": grouped_difference_interval(
            roc_auc,
            test_labels,
            probability[split.test],
            rule_score[split.test],
            partners[split.test],
            resamples=config.bootstrap_resamples,
            seed=config.seed,
        ),
        "engagement_decline_rule": {"roc_auc": roc_auc(test_labels, rule_score[split.test])}
        | {"false_alert_rate": float(rule_alerts[split.test][test_labels == 0].mean())}
        | lead_times(rows, rule_alerts, truth, split.test),
        "health_score": {
            "roc_auc": roc_auc(test_labels, -health_score[split.test]),
            "weights": scorer.weights,
            "at_risk_below": scorer.at_risk_below,
            "watch_below": scorer.watch_below,
            "disengagement_rate_by_band": {
                band: float(test_labels[bands == band].mean()) if (bands == band).any() else None for band in BANDS
            },
            "share_by_band": {band: float(np.mean(bands == band)) for band in BANDS},
            "stability": band_stability(
                health_score[split.train],
                labels[split.train],
                partners[split.train],
                health_score[split.test],
                scorer,
                config,
            ),
        },
        "calibration": calibration,
        "rows": {
            "train": int(split.train.sum()),
            "calibration": int(split.calibration.sum()),
            "test": int(split.test.sum()),
        },
        "base_rate": {"train": float(labels[split.train].mean()), "test": float(test_labels.mean())},
        "time_cut": split.cut.isoformat(),
        "rule_alert_rate_train": alert_rate,
    }

    progress.step("computing the partner snapshot and programme KPIs")
    now = snapshot_time(ecosystem)
    snapshot_rows = as_of_rows(ecosystem.partners[schema.PARTNER_ID].to_numpy(), now)
    snapshot = pd.concat([snapshot_rows, health_features(ecosystem, scores, snapshot_rows)], axis=1)
    kpis, summary = programme_kpis(ecosystem, now)
    model = HealthModel(
        disengagement,
        scorer,
        snapshot,
        kpis,
        partner_history(ecosystem, scores, now),
        summary | {"metrics": metrics, "snapshot_as_of": now.isoformat()},
    )
    return HealthFit(model=model, metrics=metrics)


def partner_history(ecosystem: schema.Ecosystem, scores: MessageScores, now: pd.Timestamp) -> pd.DataFrame:
    """Every partner's HISTORY_SERIES features at HISTORY_MONTHS monthly as-of times ending at `now`."""
    times = [now - pd.DateOffset(months=months) for months in range(HISTORY_MONTHS - 1, -1, -1)]
    rows = as_of_rows(ecosystem.partners[schema.PARTNER_ID].to_numpy(), times)
    features = health_features(ecosystem, scores, rows)
    return pd.concat([rows, features[list(HISTORY_SERIES.values())]], axis=1)


def programme_kpis(ecosystem: schema.Ecosystem, as_of: pd.Timestamp) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-partner KPI table (tier metrics, time to competency, recommendation) and the programme
    summary (cohort medians, slowing factors, tier summary and thresholds), JSON-ready."""
    competency = time_to_competency(ecosystem)
    metrics = tier_metrics(ecosystem, as_of)
    summary_table = tier_summary(metrics)
    thresholds = TierThresholds.from_summary(summary_table)
    kpis = metrics.merge(competency, on=schema.PARTNER_ID, how="left", validate="one_to_one")
    kpis[RECOMMENDATION] = recommend_tiers(metrics, thresholds)
    factors = competency_factors(ecosystem, competency)
    summary = {
        "cohorts": median_by(competency, competency[COHORT]).to_dict(orient="records"),
        "competency_factors": factor_spread(factors),
        "tiers": summary_table.to_dict(orient="records"),
        "tier_thresholds": asdict(thresholds),
    }
    return kpis, _json_ready(summary)


def _json_ready(value: Any) -> Any:
    """NaN -> None, numpy scalars -> Python, tuples -> lists, recursively."""
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


class _HealthPyfunc(PythonModel):
    """pyfunc face: predict(frame of DISENGAGEMENT_FEATURES floats) -> disengagement probability in 90 days."""

    def load_context(self, context: Any) -> None:
        self.model = HealthModel.load(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        return self.model.probability(model_input)


@dataclass(frozen=True)
class HealthReport:
    version: RegisteredVersion
    alias: str
    metrics: dict[str, Any]


def register_health(
    model: HealthModel, metrics: dict[str, Any], config: HealthConfig, paths: Paths, sentiment_version: str
) -> HealthReport:
    """Log one MLflow run and register the model; it becomes champion when there is none yet or when
    its held-out ROC-AUC is at least the engagement-decline rule's, else challenger."""
    beats_rule = bool(metrics["model"]["roc_auc"] >= metrics["engagement_decline_rule"]["roc_auc"])
    promoted = beats_rule or version_by_alias(paths, REGISTERED_HEALTH_MODEL, CHAMPION) is None
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", name) for name in DISENGAGEMENT_FEATURES]),
        outputs=Schema([ColSpec("double", "disengagement_probability")]),
    )
    example = model.snapshot[list(DISENGAGEMENT_FEATURES)].head(1).fillna(0.0)
    with tempfile.TemporaryDirectory(prefix="health-") as scratch, tracking.start_run(paths, "health") as run:
        run.log_params({key: value for key, value in asdict(config).items() if key != "ecosystem"})
        run.log_params({"ecosystem": asdict(config.ecosystem), "sentiment_model": sentiment_version})
        run.log_metrics(_json_ready(metrics))
        directory = model.save(Path(scratch) / BUNDLE_ARTIFACT)
        version = tracking.register_directory(
            run,
            directory,
            REGISTERED_HEALTH_MODEL,
            _HealthPyfunc(),
            signature,
            example,
            {"sentiment_model": sentiment_version},
        )
        decision = (
            "promoted: held-out ROC-AUC at least the engagement-decline rule's"
            if beats_rule
            else ("promoted: the first health model" if promoted else "challenger: below the engagement-decline rule")
        )
        alias = tracking.mark_version(
            paths, REGISTERED_HEALTH_MODEL, version.version, promoted, decision, metrics["model"]
        )
    return HealthReport(version=version, alias=alias, metrics=metrics)


def load_sentiment_champion(paths: Paths, threads: int = 2) -> tuple[SentimentModel, RegisteredVersion]:
    """`partnermatch-sentiment@champion`; ValueError naming the command that trains one when none is registered."""
    version = version_by_alias(paths, REGISTERED_SENTIMENT_MODEL, CHAMPION)
    if version is None:
        raise ValueError(
            f"no {REGISTERED_SENTIMENT_MODEL}@{CHAMPION} is registered: run `partnermatch train-sentiment` first"
        )
    return SentimentModel.from_directory(local_bundle(paths, version), paths.cache_dir, threads), version


def train_health(
    config: HealthConfig, paths: Paths, data_dir: Path | None = None, progress: Progress = SILENT
) -> HealthReport:
    """Score the messages with the sentiment champion, fit, evaluate and register `partnermatch-health`
    on a generated ecosystem directory (it needs the ground truth) or the demo ecosystem of `config`."""
    sentiment, sentiment_version = load_sentiment_champion(paths)
    if data_dir is not None:
        ecosystem, truth = load_ecosystem_directory(data_dir)
        if truth is None:
            raise ValueError(f"{data_dir} has no ground truth: the disengagement model trains on a generated ecosystem")
    else:
        ecosystem, truth = demo_ecosystem(config.ecosystem, paths, progress)
    progress.step(
        f"scoring {len(ecosystem.communications):,} messages with {sentiment_version.name} v{sentiment_version.version}"
    )
    scores = score_messages(ecosystem, sentiment, progress=progress)
    fit = fit_health(ecosystem, truth, scores, config, progress)
    progress.step(f"registering {REGISTERED_HEALTH_MODEL}")
    return register_health(
        fit.model, fit.metrics, config, paths, f"{sentiment_version.name} v{sentiment_version.version}"
    )
