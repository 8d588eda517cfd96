"""Pure stages of the sentiment, partner-health and KPI endpoints (no bentoml): load a registered
version of each model (`serving.service.load_served` finds which; absent is not an error: the endpoint
answers 503 naming the command that trains one), turn model outputs into response bodies, map domain
errors to statuses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.health import AS_OF
from features.kpis import FACTOR_LEVEL
from features.sentiment_data import SENTIMENT_CLASSES
from models.health import HISTORY_SERIES, HealthModel, PartnerHealth, UnknownPartnersError
from models.registry import (
    CHAMPION,
    Paths,
    RegisteredVersion,
    local_bundle,
)
from models.sentiment import SentimentModel, read_manifest
from serving.health_schemas import (
    AtRiskResponse,
    CohortCompetency,
    CohortsResponse,
    HealthReason,
    PartnerHealthOut,
    PartnerHealthResponse,
    PartnerKpis,
    PartnerTrends,
    SentimentResponse,
    ServedModel,
    TextSentiment,
    TrendPoint,
)

# One text per request encodes in a few ms; one thread each keeps two workers off each other's core.
SENTIMENT_ENCODER_THREADS = 1
TRAIN_SENTIMENT = "partnermatch train-sentiment"
TRAIN_HEALTH = "partnermatch train-health"


@dataclass(frozen=True)
class LoadedSentiment:
    model: SentimentModel
    served: ServedModel


@dataclass(frozen=True)
class LoadedHealth:
    model: HealthModel
    served: ServedModel


def sentiment_of(paths: Paths, version: RegisteredVersion) -> LoadedSentiment:
    """One registered sentiment version with an uncached encoder (each text is new)."""
    from features.embed import CachedEncoder, make_encoder

    directory = local_bundle(paths, version)
    encoder = make_encoder(read_manifest(directory)["encoder"], paths.cache_dir, threads=SENTIMENT_ENCODER_THREADS)
    uncached = encoder.inner if isinstance(encoder, CachedEncoder) else encoder
    return LoadedSentiment(
        SentimentModel.load(directory, uncached), ServedModel(name=version.name, version=version.version)
    )


def health_of(paths: Paths, version: RegisteredVersion) -> LoadedHealth:
    """One registered partner-health version."""
    return LoadedHealth(
        HealthModel.load(local_bundle(paths, version)), ServedModel(name=version.name, version=version.version)
    )


def missing_model_reason(model_name: str, command: str) -> str:
    return f"no {model_name}@{CHAMPION} is registered: run `{command}`"


def sentiment_rows(model: SentimentModel, texts: list[str]) -> list[list[float]]:
    """Per text: the class probabilities (SENTIMENT_CLASSES order) then frustration, as plain floats
    (the body of the batched method: a list per text, so batches of requests stack and split)."""
    prediction = model.predict(texts)
    return np.column_stack([prediction.probabilities, prediction.frustration]).tolist()


def sentiment_response(served: ServedModel, rows: list[list[float]]) -> SentimentResponse:
    """The response body from `sentiment_rows` output; the label is the most probable class."""
    results = []
    for row in rows:
        probabilities = dict(zip(SENTIMENT_CLASSES, row[: len(SENTIMENT_CLASSES)], strict=True))
        label = max(probabilities, key=lambda name: probabilities[name])
        results.append(TextSentiment(label=label, probabilities=probabilities, frustration=row[len(SENTIMENT_CLASSES)]))
    return SentimentResponse(model=served, results=results)


AT_RISK_LIMIT = 25  # partners in GET /partners/at_risk


def _health_out(health: PartnerHealth) -> PartnerHealthOut:
    return PartnerHealthOut(
        partner_id=health.partner_id,
        as_of=health.as_of,
        score=health.score,
        band=health.band,
        disengagement_probability=health.disengagement_probability,
        reasons=[HealthReason(feature=r.feature, contribution=r.contribution, text=r.text) for r in health.reasons],
        components=health.components,
        trends=health.trends,
    )


def health_response(loaded: LoadedHealth, partner_ids: list[str]) -> PartnerHealthResponse:
    """Health of the partners; UnknownPartnersError (404) names unknown ids."""
    return PartnerHealthResponse(
        model=loaded.served, partners=[_health_out(health) for health in loaded.model.assess(partner_ids)]
    )


def at_risk_response(loaded: LoadedHealth) -> AtRiskResponse:
    """The AT_RISK_LIMIT partners most likely to disengage, with reasons."""
    assessed = loaded.model.most_at_risk(AT_RISK_LIMIT)
    as_of = assessed[0].as_of if assessed else str(loaded.model.summary.get("snapshot_as_of", ""))[:10]
    return AtRiskResponse(model=loaded.served, as_of=as_of, partners=[_health_out(health) for health in assessed])


def trends_response(loaded: LoadedHealth, partner_id: str) -> PartnerTrends:
    """One partner's monthly engagement and sentiment; UnknownPartnersError (404) when unknown."""
    history = loaded.model.partner_history(partner_id)
    engagement, sentiment = (history[feature].to_numpy(dtype=float) for feature in HISTORY_SERIES.values())
    points = [
        TrendPoint(
            as_of=pd.Timestamp(time).date().isoformat(),
            engagement_30d=float(engagement[row]),
            sentiment=None if np.isnan(sentiment[row]) else float(sentiment[row]),
        )
        for row, time in enumerate(history[AS_OF])
    ]
    return PartnerTrends(model=loaded.served, partner_id=partner_id, points=points)


def cohorts_response(loaded: LoadedHealth) -> CohortsResponse:
    """Time to competency by join quarter, from the bundle's programme summary."""
    cohorts = [
        CohortCompetency(
            cohort=str(row[FACTOR_LEVEL]),
            partners=int(row["partners"]),
            first_wins=int(row["first_wins"]),
            median_days=row["median_days"],
        )
        for row in loaded.model.summary.get("cohorts", [])
    ]
    return CohortsResponse(model=loaded.served, cohorts=cohorts)


def kpi_response(loaded: LoadedHealth, partner_id: str) -> PartnerKpis:
    """The programme KPIs of one partner; UnknownPartnersError (404) when unknown."""
    kpis = loaded.model.partner_kpis(partner_id)
    return PartnerKpis(
        model=loaded.served,
        partner_id=partner_id,
        kpis=kpis,
        recommendation=str(kpis["recommendation"]),
        tier_thresholds=loaded.model.summary.get("tier_thresholds", {}),
    )


def health_status(error: Exception) -> int:
    """404 for unknown partner ids, else 422."""
    return 404 if isinstance(error, UnknownPartnersError) else 422
