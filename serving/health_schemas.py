"""Request and response models of the sentiment, partner-health and KPI endpoints.

Sizes are validated here, at the edge: a batch of at most `MAX_SENTIMENT_TEXTS` texts, each with a
non-blank character and at most `MAX_SENTIMENT_TEXT_CHARS` characters; a failing item answers 422
naming its index (`texts.3`) and the limit. Partner ids are checked against the served snapshot by
`models.health` (404 naming the unknown ids).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from serving.schemas import _Strict

MAX_SENTIMENT_TEXTS = 64
MAX_SENTIMENT_TEXT_CHARS = 5_000
MAX_HEALTH_PARTNERS = 100

SentimentText = Annotated[str, Field(min_length=1, max_length=MAX_SENTIMENT_TEXT_CHARS, pattern=r"\S")]


class SentimentRequest(_Strict):
    texts: list[SentimentText] = Field(
        min_length=1,
        max_length=MAX_SENTIMENT_TEXTS,
        description=f"1 to {MAX_SENTIMENT_TEXTS} texts, each non-blank and at most "
        f"{MAX_SENTIMENT_TEXT_CHARS:,} characters.",
    )


class ServedModel(BaseModel):
    name: str
    version: str


class TextSentiment(BaseModel):
    label: str = Field(description="negative, neutral or positive: the most probable class.")
    probabilities: dict[str, float] = Field(description="Calibrated class probabilities, summing to 1.")
    frustration: float = Field(description="Probability in [0, 1] that the text shows frustration.")


class SentimentResponse(BaseModel):
    model: ServedModel
    results: list[TextSentiment] = Field(description="One per text, in request order.")


class PartnerHealthRequest(_Strict):
    partner_ids: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=MAX_HEALTH_PARTNERS, description=f"1 to {MAX_HEALTH_PARTNERS} partner ids."
    )


class HealthReason(BaseModel):
    feature: str
    contribution: float = Field(description="TreeSHAP log-odds contribution to the disengagement risk (> 0 raises it).")
    text: str


class PartnerHealthOut(BaseModel):
    partner_id: str
    as_of: str = Field(description="ISO date the features describe (the end of the served data).")
    score: float = Field(description="Health score in [0, 100], higher is healthier.")
    band: str = Field(description="healthy, watch or at_risk.")
    disengagement_probability: float = Field(description="Calibrated probability of disengaging in the next 90 days.")
    reasons: list[HealthReason]
    components: dict[str, float] = Field(
        description="Component percentiles in [0, 100]: engagement, sentiment, pipeline, win_rate."
    )
    trends: dict[str, float | None] = Field(
        description="The trend features behind the components; null without events."
    )


class PartnerHealthResponse(BaseModel):
    model: ServedModel
    partners: list[PartnerHealthOut]


class PartnerKpis(BaseModel):
    model: ServedModel
    partner_id: str
    kpis: dict[str, Any] = Field(
        description="Win rate, pipeline and revenue over the last 365 days, time to competency (days from "
        "joining to the first won deal, censored when none yet), cohort and tier recommendation."
    )
    recommendation: str = Field(description="promote, keep or review.")
    tier_thresholds: dict[str, Any] = Field(description="The tier thresholds the recommendation used.")


class AtRiskResponse(BaseModel):
    model: ServedModel
    as_of: str = Field(description="ISO date the features describe (the end of the served data).")
    partners: list[PartnerHealthOut] = Field(
        description="The partners most likely to disengage in the next 90 days, most likely first."
    )


class TrendPoint(BaseModel):
    as_of: str = Field(description="ISO date of the point (monthly).")
    engagement_30d: float = Field(
        description="Engagement events (logins, registrations, trainings) in the 30 days before."
    )
    sentiment: float | None = Field(
        description="Mean polarity p(positive) - p(negative) in [-1, 1] of the messages of the 60 days before; "
        "null without messages."
    )


class PartnerTrends(BaseModel):
    model: ServedModel
    partner_id: str
    points: list[TrendPoint] = Field(description="Monthly points, oldest first; the last is the snapshot.")


class CohortCompetency(BaseModel):
    cohort: str = Field(description="Join quarter, e.g. 2023Q2.")
    partners: int
    first_wins: int = Field(description="Partners of the cohort that have won a first deal.")
    median_days: float | None = Field(
        description="Kaplan-Meier median days from joining to the first won deal; null while not reached."
    )


class CohortsResponse(BaseModel):
    model: ServedModel
    cohorts: list[CohortCompetency] = Field(description="Time to competency by join quarter, oldest first.")
