"""Request and response models of the routing API: the only module that imports pydantic.

Validation that needs no model (types, ranges, sizes) happens here, at the edge; vocabularies
(products, regions) and partner ids belong to the served model bundle and are checked by
`serving.routing`, which raises `FeatureError(field, reason)` with the same dotted field names
(`deal.products`, `options.candidate_pool`, ...).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    field_serializer,
    field_validator,
)
from pydantic.json_schema import JsonDict

from features.schema import LOAD_WINDOW, MAX_CERT_LEVEL, SEGMENTS

MAX_RESULTS_LIMIT = 50
MAX_CANDIDATE_POOL = 2000
MAX_EXCLUDED_PARTNERS = 10_000
MAX_TEXT_CHARS = 10_000
REASONS_PER_PARTNER = 3

ConstraintName = Literal["region", "certifications", "excluded", "capacity"]
CandidateSource = Literal["retrieval", "candidate_pool", "all_eligible"]


class _Strict(BaseModel):
    """Unknown keys are errors, so a misspelt option cannot be silently ignored; types are strict and
    strings are taken as sent, so the requests accepted are exactly those the OpenAPI document allows
    (`"5"` is no number, `" dach"` no region)."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _whole(value: Any) -> Any:
    """JSON Schema counts 19.0 as an integer; so do we (strict mode alone would refuse it)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Count = Annotated[int, BeforeValidator(_whole)]


def _unique_items(schema: JsonDict) -> None:
    """Documents `_unique` in the JSON schema: `uniqueItems` on the array, inside `anyOf` when optional."""
    branches = schema.get("anyOf")
    for branch in [schema, *(branches if isinstance(branches, list) else [])]:
        if isinstance(branch, dict) and branch.get("type") == "array":
            branch["uniqueItems"] = True


def _unique(values: list[str], what: str) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must not repeat")
    return values


class DealIn(_Strict):
    """A deal to route, as the CRM knows it now."""

    requirement_text: str = Field(
        min_length=1,
        max_length=MAX_TEXT_CHARS,
        # Spelt out rather than \S: regex engines disagree on which Unicode characters are spaces.
        pattern=r"[^ \t\n\r\f\v]",
        description="What the customer needs, in words (not only spaces).",
    )
    products: list[str] = Field(
        min_length=1,
        max_length=12,
        description="Products the deal needs (names from the model's vocabulary).",
        json_schema_extra=_unique_items,
    )
    region: str = Field(min_length=1, max_length=64, description="Region of the customer, e.g. `dach`.")
    amount: float = Field(gt=0, allow_inf_nan=False, description="Deal size in USD, > 0.")
    segment: str = Field(
        min_length=1,
        max_length=64,
        examples=list(SEGMENTS),
        description="Customer segment, e.g. `enterprise`; free text, not a model input (logged with the decision).",
    )
    registered_partner_id: str | None = Field(
        default=None,
        min_length=1,
        description="Partner that registered this deal (deal registration): protected unless overridden.",
    )
    deal_id: str | None = Field(default=None, max_length=128, description="The caller's reference, echoed back.")

    @field_validator("products")
    @classmethod
    def _products_unique(cls, products: list[str]) -> list[str]:
        return _unique(products, "products")


class CertificationRequirement(_Strict):
    product: str = Field(min_length=1, max_length=64)
    min_level: Count = Field(default=1, ge=1, le=MAX_CERT_LEVEL, description="1 associate, 2 professional, 3 expert.")


class RouteOptions(_Strict):
    """How to route: result count and hard constraints."""

    max_results: Count = Field(default=5, ge=1, le=MAX_RESULTS_LIMIT, description="Partners to return.")
    required_certifications: list[CertificationRequirement] = Field(
        default_factory=list, max_length=12, description="Every listed certification at least at its level."
    )
    allowed_regions: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="The partner must operate in one of these regions; default: the deal's region.",
        json_schema_extra=_unique_items,
    )
    excluded_partner_ids: list[str] = Field(default_factory=list, max_length=MAX_EXCLUDED_PARTNERS)
    candidate_pool: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CANDIDATE_POOL,
        description="Route among exactly these partners (no retrieval); constraints still apply.",
        json_schema_extra=_unique_items,
    )
    respect_capacity: bool = Field(
        default=True,
        description=f"Leave out partners whose last {LOAD_WINDOW.days} days of deals reach their declared capacity.",
    )
    override_registration: bool = Field(
        default=False, description="Rank the registered partner on merit instead of protecting it at rank 1."
    )

    @field_validator("allowed_regions", "candidate_pool")
    @classmethod
    def _optional_unique(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else _unique(values, "entries")


class RouteRequest(_Strict):
    """The body of `POST /route`."""

    deal: DealIn
    options: RouteOptions = Field(default_factory=RouteOptions)


class Reason(BaseModel):
    feature: str = Field(description="Model feature the reason comes from.")
    text: str = Field(description="The reason in words.")
    contribution: float = Field(description="TreeSHAP contribution to the win log-odds (+ raises, - lowers).")


class RankedPartner(BaseModel):
    rank: int = Field(ge=1, description="1 is the best.")
    partner_id: str
    name: str
    win_probability: float = Field(ge=0, le=1, description="Calibrated probability of winning the deal.")
    registered: bool = Field(description="This partner registered the deal.")
    reasons: list[Reason] = Field(description=f"Top {REASONS_PER_PARTNER} reasons by absolute contribution.")


class ConstraintReport(BaseModel):
    name: ConstraintName
    detail: str
    removed: int = Field(ge=0, description="Retrieved candidates this constraint removed (applied in order).")


class CandidateReport(BaseModel):
    source: CandidateSource = Field(
        description="retrieval: text neighbours + history shortlist; all_eligible: every eligible partner was scored."
    )
    retrieved: int = Field(ge=0, description="Distinct candidates before the constraints.")
    text_neighbours: int = Field(ge=0)
    history_shortlist: int = Field(ge=0)
    eligible_partners: int = Field(ge=0, description="Partners in the whole catalogue that meet every constraint.")
    scored: int = Field(ge=0, description="Candidates the model scored.")


class ChannelConflict(BaseModel):
    registered_partner_id: str
    status: Literal["protected", "overridden"]
    merit_rank: int | None = Field(
        description="Rank on win probability alone among the scored candidates; null if it fails a constraint."
    )
    displaced_partner_id: str | None = Field(
        description="Partner that would have been rank 1 on merit, when protection put another partner there."
    )
    message: str


class ModelInfo(BaseModel):
    name: str
    version: str
    encoder: str


class RouteResponse(BaseModel):
    decision_id: str
    deal_id: str | None
    model: ModelInfo
    features_as_of: datetime = Field(description="Partner history is taken as of this time (the model's history end).")
    partners: list[RankedPartner] = Field(min_length=1)
    constraints: list[ConstraintReport]
    candidates: CandidateReport
    channel_conflict: ChannelConflict | None

    @field_serializer("features_as_of", when_used="json")
    def _in_utc(self, moment: datetime) -> datetime:
        """History times are UTC: say so in JSON, as RFC 3339 date-times must."""
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class FieldProblem(BaseModel):
    field: str = Field(description="Dotted path of the offending input, e.g. `deal.amount`.")
    reason: str


class ErrorResponse(BaseModel):
    """Body of every 4xx this service produces itself: the first problem, then all of them."""

    error: str = Field(description="`field: reason` in one line.")
    field: str = Field(description="Dotted path of the offending input, e.g. `deal.amount`.")
    reason: str
    problems: list[FieldProblem]
    model_version: str | None = Field(default=None, description="The model that was asked, if one was.")


# --- POST /feedback ---------------------------------------------------------------------------------

MAX_TEAM_SIZE = 10
# Times arrive as ISO 8601 text in JSON: lax parsing for them alone, with an offset required.
EventTime = Annotated[AwareDatetime, Strict(False)]
EngagementKind = Literal[
    "portal_login", "training_completed", "deal_registered", "webinar_attended", "mdf_claimed"
]  # features.schema.ENGAGEMENT_KINDS (checked equal in the tests)


class OutcomeIn(_Strict):
    """A routed deal was won or lost: closes the attempt of each partner named."""

    type: Literal["outcome"]
    decision_id: str = Field(
        min_length=1, max_length=64, description="The `POST /route` or `POST /team` decision this deal got."
    )
    deal_id: str | None = Field(
        default=None, max_length=128, description="The CRM's deal id; must match the routed deal's when both are set."
    )
    partner_ids: list[str] = Field(
        min_length=1,
        max_length=MAX_TEAM_SIZE,
        description="The partner who worked the deal, or every member of a co-sell team.",
        json_schema_extra=_unique_items,
    )
    result: Literal["won", "lost"]
    closed_at: EventTime = Field(description="When the deal closed (ISO 8601 with offset), not before it was routed.")
    amount: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="Final deal size in USD; default: the routed amount."
    )

    @field_validator("partner_ids")
    @classmethod
    def _distinct_partners(cls, values: list[str]) -> list[str]:
        return _unique(values, "partner_ids")


class EngagementIn(_Strict):
    """A partner engagement event (portal login, training, ...)."""

    type: Literal["engagement"]
    partner_id: str = Field(min_length=1, max_length=128)
    kind: EngagementKind
    occurred_at: EventTime = Field(description="When it happened (ISO 8601 with offset).")


class FeedbackRequest(_Strict):
    """The body of `POST /feedback`: one CRM event, identified by the CRM's `event_id`."""

    event_id: str = Field(
        min_length=1, max_length=128, description="Unique per event: a retry with the same body is answered again."
    )
    event: OutcomeIn | EngagementIn = Field(discriminator="type")


class FeedbackResponse(BaseModel):
    event_id: str
    sequence: int = Field(ge=1, description="Position of the event in the feedback store (acceptance order).")
    accepted_at: datetime = Field(description="When the event was first accepted (UTC).")
    replayed: bool = Field(description="True when this event id had already been accepted with this body.")
    model: ModelInfo = Field(description="The model serving when the event was accepted.")


class TrainingWindow(BaseModel):
    """The deals a model was fitted on (its drift reference)."""

    start: str = Field(description="ISO time of the first training deal.")
    end: str = Field(description="ISO time of the last training deal.")
    rows: int = Field(ge=0, description="Training (deal, partner) rows.")


class DriftStatus(BaseModel):
    """The last drift computed for a model version (`partnermatch drift`)."""

    status: Literal["ok", "warn", "alert", "unknown"] = Field(
        description="ok: PSI max < warn; warn: < alert; alert: >= alert; unknown: never computed."
    )
    psi_max: float | None = Field(default=None, ge=0, description="Largest PSI over features and prediction.")
    warn: float = Field(description="PSI threshold of warn.")
    alert: float = Field(description="PSI threshold of alert.")


class ModelStatus(BaseModel):
    """A registered model version this service has loaded."""

    name: str
    version: str
    alias: str = Field(description="The registry alias it was loaded by, e.g. `champion`.")
    encoder: str | None = Field(description="The text encoder it embeds with; None for a model without one.")
    training_window: TrainingWindow | None = Field(description="None for a bundle without a drift reference.")
    drift: DriftStatus


class ModelsResponse(BaseModel):
    """Every registered model the service loaded; `model` is the one that answers routing requests."""

    model: ModelInfo
    models: list[ModelStatus]


class ModelChange(BaseModel):
    """A model a reload swapped: the version served before and the one served now."""

    name: str
    alias: str
    previous_version: str | None = Field(description="None: no version was loaded before.")
    version: str | None = Field(description="None: the alias names no version any more (its endpoints answer 503).")


class ReloadResponse(BaseModel):
    """The result of a reload: `model` now answers routing requests; `changes` lists every model
    swapped (empty when no alias had moved)."""

    model: ModelInfo
    reloaded: bool = Field(description="True when at least one model was swapped.")
    changes: list[ModelChange]
