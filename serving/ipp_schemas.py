"""Request and response models of the ideal-partner-profile API: `POST /ipp_fit`, `GET /white_space`.

The IPP counterpart of `serving.schemas` (whose strict base and `ModelInfo` it shares). Types and
sizes are checked here; products, regions, certification levels and the profile's words are checked
by `features.prospects.prospect_from_fields` (one rule for files and requests, errors naming the
value), and the documented schema states the same rules (enums, `PROFILE_PATTERN`), so a client
generated from the contract sends only prospects the service accepts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field
from pydantic.json_schema import JsonDict

from features.prospects import MIN_PROFILE_WORDS
from features.schema import MAX_CERT_LEVEL, PRODUCTS, REGIONS
from serving.schemas import Count, ModelInfo, _Strict, _whole

MAX_PROSPECTS_PER_REQUEST = 100  # a batch; 100 profiles of MAX_PROFILE_CHARS stay under the body limit
MAX_PROFILE_CHARS = 5_000
MAX_CAPACITY = 10_000  # deals per 30 days
MAX_LIST_ITEMS = 64  # products or regions of one prospect (repeats are dropped)

# `features.prospects`' usable profile: at least MIN_PROFILE_WORDS runs of two or more ASCII letters.
# Each run after the first starts after a non-letter, so the runs are distinct (JSON Schema patterns search).
PROFILE_PATTERN = r"[\s\S]*[^A-Za-z]".join([r"[A-Za-z]{2}"] * MIN_PROFILE_WORDS)


def _items_in(values: tuple[str, ...]) -> JsonDict:
    return {"items": {"type": "string", "enum": list(values)}}


# The bounds before `_whole` (the order in which pydantic writes them into the JSON schema as minimum/maximum).
CertificationLevel = Annotated[int, Field(ge=1, le=MAX_CERT_LEVEL), BeforeValidator(_whole)]


class ProspectIn(_Strict):
    """A partner a recruiter considers signing, as known at signing."""

    prospect_id: str | None = Field(
        default=None, max_length=128, description="Your reference, echoed back; default: its index in `prospects`."
    )
    profile_text: str = Field(
        max_length=MAX_PROFILE_CHARS,
        description=f"What the partner does, in words: at least {MIN_PROFILE_WORDS} words of two or more letters.",
        json_schema_extra={"pattern": PROFILE_PATTERN},
    )
    products: list[str] = Field(
        min_length=1, max_length=MAX_LIST_ITEMS, description="Products it sells.", json_schema_extra=_items_in(PRODUCTS)
    )
    certifications: dict[str, CertificationLevel] = Field(
        default_factory=dict,
        description="Product -> certification level (1 associate, 2 professional, 3 expert).",
        json_schema_extra={"propertyNames": {"enum": list(PRODUCTS)}},
    )
    regions: list[str] = Field(
        min_length=1,
        max_length=MAX_LIST_ITEMS,
        description="Regions it operates in.",
        json_schema_extra=_items_in(REGIONS),
    )
    capacity: Count = Field(ge=1, le=MAX_CAPACITY, description="Its size: deals it can work per 30 days.")


class IppFitRequest(_Strict):
    prospects: list[ProspectIn] = Field(
        min_length=1,
        max_length=MAX_PROSPECTS_PER_REQUEST,
        description=f"One prospect, or a batch of up to {MAX_PROSPECTS_PER_REQUEST}.",
    )
    keep: bool = Field(
        default=False,
        description="Keep this batch as the API key's prospect list, replacing the previous one: "
        "`GET /white_space` then lists, per cell, the kept prospects that would fill it.",
    )


class EvidenceOut(BaseModel):
    partner_id: str
    similarity: float = Field(description="Cosine of the profile embeddings, in [-1, 1].")
    win_rate: float = Field(description="The partner's realised first-year win rate, in (0, 1).")


class ReasonOut(BaseModel):
    feature: str
    contribution: float = Field(description="Fit-score points (percent) this attribute adds (> 0) or removes (< 0).")
    text: str


class WhiteSpaceCellOut(BaseModel):
    """A product x region cell with unmet demand, and the profile of the partner to recruit there."""

    product: str
    region: str
    excess_unmet_per_month: float = Field(description="Unmet deals per 30 days beyond well-served cells.")
    deals_per_month: float
    recruit_capacity: int = Field(description="Deals per 30 days the partner to recruit should take on.")
    recruit_certification_level: int = Field(description="Certification level on the product (median of winners).")
    serving_partners: int = Field(description="Current partners selling the product in the region.")
    typical_amount: float = Field(description="Median deal in the cell, USD.")
    typical_segment: str


class ProspectFit(BaseModel):
    prospect_id: str
    fit_score: float = Field(description="Expected first-year win rate, percent in [0, 100].")
    percentile: float | None = Field(description="Percent of current partners with a lower fit score.")
    expected_days_to_first_win: float | None = Field(
        description="Median days to a first win of similar partners; null: more than `first_win_observed_days`."
    )
    first_win_observed_days: float
    nearest_top_performers: list[EvidenceOut] = Field(description="Evidence: the most similar top performers.")
    raises: list[ReasonOut] = Field(description="Attributes that raise the score, strongest first.")
    lowers: list[ReasonOut] = Field(description="Attributes that lower the score, strongest first.")
    white_space: list[WhiteSpaceCellOut] = Field(description="White-space cells it would fill, best first.")


class IppFitResponse(BaseModel):
    model: ModelInfo
    prospects: list[ProspectFit]
    kept: bool = Field(description="Whether the batch is now the API key's prospect list.")


class KeptProspect(BaseModel):
    """A prospect of a kept list, with the fit it was given."""

    prospect: ProspectIn
    prospect_id: str
    fit_score: float
    percentile: float | None


class KeptList(BaseModel):
    """An API key's kept prospect list (`IppFitRequest.keep`)."""

    saved_at: datetime
    model_version: str = Field(description="The IPP model version that scored it.")
    prospects: list[KeptProspect]


class CellProspect(BaseModel):
    prospect_id: str
    fit_score: float
    percentile: float | None


class WhiteSpaceCellMap(WhiteSpaceCellOut):
    prospects: list[CellProspect] = Field(
        description="Kept prospects that would fill the cell (sell the product, operate in the region), best fit first."
    )


class ProspectListInfo(BaseModel):
    saved_at: datetime
    prospects: int
    model_version: str


class WhiteSpaceResponse(BaseModel):
    model: ModelInfo
    products: list[str] = Field(description="Rows of the product x region map.")
    regions: list[str] = Field(description="Columns of the product x region map.")
    cells: list[WhiteSpaceCellMap] = Field(description="Cells with unmet demand, most unmet first; others have none.")
    prospect_list: ProspectListInfo | None = Field(description="The key's kept prospect list; null: none kept.")
