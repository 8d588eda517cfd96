"""Request and response models of `POST /team`, `POST /route/batch` and `POST /route/why_not`.

The deal is `serving.schemas.DealIn` everywhere (one definition of a deal); vocabularies and partner
ids are checked by the pure handlers (`serving.team`, `serving.batch`, `serving.why_not`), which
raise `FeatureError(field, reason)` with the dotted field names used here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field, field_validator

from features.schema import LOAD_WINDOW
from models.assignment import EMERGING_TENURE_DAYS
from serving.schemas import (
    MAX_EXCLUDED_PARTNERS,
    CandidateSource,
    ConstraintName,
    Count,
    DealIn,
    ModelInfo,
    Reason,
    RouteOptions,
    RouteRequest,
    RouteResponse,
    _Strict,
    _unique,
    _unique_items,
    _whole,
)

MAX_TEAM_MEMBERS = 7  # exact Shapley credit scores 2^members coalitions
MAX_TEAMS = 10
MAX_BATCH_DEALS = 200  # one request routes each deal, then one MILP over all of them (~2-4 s at the limit)


class TeamOptions(_Strict):
    """Limits of the teams to assemble."""

    top_k: Count = Field(default=3, ge=1, le=MAX_TEAMS, description="Distinct teams to return, best first.")
    max_members: Count = Field(
        default=4, ge=1, le=MAX_TEAM_MEMBERS, description="At most this many distinct partners in a team."
    )
    required_partner_ids: list[str] = Field(
        default_factory=list,
        max_length=MAX_TEAM_MEMBERS,
        description="Partners every team must include (each must be eligible); the deal's registered partner is added.",
        json_schema_extra=_unique_items,
    )
    excluded_partner_ids: list[str] = Field(default_factory=list, max_length=MAX_EXCLUDED_PARTNERS)
    allowed_regions: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Members must operate in one of these regions; default: the deal's region.",
        json_schema_extra=_unique_items,
    )
    respect_capacity: bool = Field(
        default=True,
        description=f"Leave out partners whose last {LOAD_WINDOW.days} days of deals reach their declared capacity.",
    )

    @field_validator("required_partner_ids")
    @classmethod
    def _required_unique(cls, values: list[str]) -> list[str]:
        return _unique(values, "required_partner_ids")

    @field_validator("allowed_regions")
    @classmethod
    def _regions_unique(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else _unique(values, "allowed_regions")


class TeamRequest(_Strict):
    """The body of `POST /team`: each of the deal's products is a requirement a member must cover."""

    deal: DealIn
    options: TeamOptions = Field(default_factory=TeamOptions)


class TeamMemberOut(BaseModel):
    partner_id: str
    name: str
    covers: list[str] = Field(min_length=1, description="The requirements (products) this member delivers.")
    fit: list[float] = Field(description="Win-model probability of this member on each covered requirement alone.")
    credit: float = Field(
        description="Exact Shapley share of the team's win probability over the baseline team (shares sum to "
        "win_probability - baseline_probability; can be negative)."
    )


class TeamOut(BaseModel):
    rank: int = Field(ge=1)
    members: list[TeamMemberOut] = Field(min_length=1)
    win_probability: float = Field(ge=0, le=1, description="The team model's calibrated probability of winning.")
    baseline_probability: float = Field(
        ge=0, le=1, description="The team of each requirement's median-fit candidate: what credit is measured from."
    )
    cohesion: float = Field(ge=0, le=1, description="Share of member pairs that have co-sold before.")
    reasons: list[Reason]


class TeamResponse(BaseModel):
    decision_id: str = Field(description="The logged decision (`GET /decisions/{decision_id}`, `POST /feedback`).")
    deal_id: str | None
    model: ModelInfo = Field(description="The partnermatch-team version (its bundle holds the win model for fits).")
    requirements: list[str]
    candidates_per_requirement: list[int] = Field(description="Eligible candidates the optimiser chose among.")
    teams: list[TeamOut] = Field(min_length=1)


class BatchOptions(_Strict):
    """How the batch is assigned."""

    # Bounds before the validator: pydantic then writes them as JSON Schema's minimum / maximum.
    capacity_per_partner: Annotated[int, Field(ge=0, le=10_000), BeforeValidator(_whole)] | None = Field(
        default=None,
        description="Deals of this batch one partner can take; default: its declared capacity minus its deals "
        f"of the last {LOAD_WINDOW.days} days.",
    )
    exposure_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="At least this share of the assigned deals goes to emerging partners.",
    )
    emerging_tenure_days: float = Field(
        default=EMERGING_TENURE_DAYS,
        gt=0,
        le=36_500,
        allow_inf_nan=False,
        description="Emerging: joined fewer days ago than this, or declared capacity below the median.",
    )


class BatchRouteRequest(_Strict):
    """The body of `POST /route/batch`: each deal as `POST /route` takes it; its routed top
    `options.max_results` are its candidates."""

    deals: list[RouteRequest] = Field(min_length=1, max_length=MAX_BATCH_DEALS)
    options: BatchOptions = Field(default_factory=BatchOptions)


class BatchAssignment(BaseModel):
    index: int = Field(ge=0, description="Position of the deal in the request.")
    deal_id: str | None
    partner_id: str | None = Field(description="Assigned by the global plan; null when capacity ran out.")
    win_probability: float | None = Field(ge=0, le=1)
    greedy_partner_id: str | None = Field(description="What one-by-one routing in request order would assign.")


class PlanSummary(BaseModel):
    expected_wins: float = Field(ge=0, description="Sum of the assigned deals' win probabilities.")
    assigned: int = Field(ge=0)
    emerging_share: float = Field(ge=0, le=1, description="Share of assigned deals on emerging partners.")


class PartnerExposure(BaseModel):
    partner_id: str
    deals: int = Field(ge=1, description="Deals of the batch assigned by the global plan.")
    capacity: int = Field(ge=0, description="Deals of the batch it could take.")
    emerging: bool


class BatchRouteResponse(BaseModel):
    model: ModelInfo
    assignments: list[BatchAssignment]
    global_plan: PlanSummary
    greedy: PlanSummary
    lift: float = Field(description="global expected wins / greedy expected wins - 1.")
    exposure_share_target: float = Field(ge=0, le=1)
    exposure: list[PartnerExposure] = Field(description="Partners the global plan assigned deals to, most first.")


class WhyNotRequest(_Strict):
    """The body of `POST /route/why_not`: a routing request and the partner asked about."""

    deal: DealIn
    options: RouteOptions = Field(default_factory=RouteOptions)
    partner_id: str = Field(min_length=1, max_length=128)


class FeatureGapOut(BaseModel):
    feature: str
    gap: float = Field(gt=0, description="Log-odds the partner ranked above gains over this one on this feature.")


class WhyNotResponse(BaseModel):
    model: ModelInfo
    deal_id: str | None
    partner_id: str
    in_top_k: bool
    top_k: int = Field(ge=1, description="The request's max_results.")
    rank: int | None = Field(description="Merit rank among the eligible candidates; null when removed.")
    win_probability: float = Field(ge=0, le=1)
    removed_by: ConstraintName | CandidateSource | None = Field(
        description="The first constraint (routing order) it fails; or, when it meets them all and would rank "
        "in the top k, `retrieval` (the candidate budget never retrieved it) or `candidate_pool` (not in the pool)."
    )
    removed_detail: str | None
    compared_with: str | None = Field(description="The partner ranked last in the top k.")
    compared_win_probability: float | None = Field(ge=0, le=1)
    gaps: list[FeatureGapOut] = Field(description="Largest first: what the partner ranked above has more of.")
    message: str


class DecisionRecord(BaseModel):
    """A logged decision (`POST /route` or `POST /team`): what was asked, what was answered, by which model."""

    decision_id: str
    logged_at: datetime
    model: ModelInfo
    request: RouteRequest | TeamRequest
    response: RouteResponse | TeamResponse
