"""The data model: vocabularies, column names and typed records.

One place for each fact: every table column name used anywhere in the project is a constant here,
and every table has a `TableSpec` that `features.io` validates files against.

Tables (one row each):
- partners:        a partner (reseller, MSP, integrator) and its declared profile
- deals:           a deal (opportunity) as the CRM knew it when it was created
- outcomes:        one (deal, partner) attempt and its result; co-sell teams share a `team_id`; on team
                   deals (several requirements, won or lost as a team) `covers_product` lists the
                   requirements each member covers
- engagement:      one partner engagement event (portal login, training, ...)
- communications:  one partner message (email, ticket, QBR note)

Multi-valued cells are stored as `|`-joined strings so that CSV and Parquet hold the same thing:
`regions = "dach|nordics"`, `certifications = "firewall:2|sd-wan:1"`, `products = "firewall|sd-wan"`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import pandas as pd

# --- vocabularies -------------------------------------------------------------------------------

PRODUCTS: tuple[str, ...] = (
    "firewall",
    "sd-wan",
    "endpoint-security",
    "identity-access",
    "managed-detection",
    "cloud-migration",
    "data-backup",
    "storage",
    "collaboration",
    "data-analytics",
    "erp-integration",
    "networking",
)
REGIONS: tuple[str, ...] = (
    "na-east",
    "na-west",
    "latam",
    "uk-ie",
    "dach",
    "nordics",
    "apac-anz",
    "apac-sea",
)
SEGMENTS: tuple[str, ...] = ("smb", "mid-market", "enterprise", "public-sector")
TIERS: tuple[str, ...] = ("registered", "silver", "gold", "platinum")
# Certification level per product: 0 none, 1 associate, 2 professional, 3 expert.
CERT_LEVELS: tuple[str, ...] = ("none", "associate", "professional", "expert")
MAX_CERT_LEVEL = len(CERT_LEVELS) - 1
ENGAGEMENT_KINDS: tuple[str, ...] = (
    "portal_login",
    "training_completed",
    "deal_registered",
    "webinar_attended",
    "mdf_claimed",
)
COMMUNICATION_CHANNELS: tuple[str, ...] = ("email", "ticket", "qbr_note")

LIST_SEPARATOR = "|"
LEVEL_SEPARATOR = ":"

# A partner's load at time t counts its attempts whose deal was created in [t - LOAD_WINDOW, t);
# capacity is declared (or true) deals per LOAD_WINDOW, so load / capacity is the load ratio.
LOAD_WINDOW = pd.Timedelta(days=30)

# --- column names -------------------------------------------------------------------------------

PARTNER_ID = "partner_id"
PARTNER_NAME = "name"
PROFILE_TEXT = "profile_text"
HOME_REGION = "home_region"
PARTNER_REGIONS = "regions"
CERTIFICATIONS = "certifications"
TIER = "tier"
CAPACITY = "capacity"  # declared deals the partner can work per LOAD_WINDOW
JOINED_AT = "joined_at"

DEAL_ID = "deal_id"
CREATED_AT = "created_at"
SEGMENT = "segment"
DEAL_REGION = "region"
DEAL_PRODUCTS = "products"
REQUIREMENT_TEXT = "requirement_text"
AMOUNT = "amount"  # USD
REGISTERED_PARTNER_ID = "registered_partner_id"  # deal registration (channel conflict); may be empty

WON = "won"
CLOSED_AT = "closed_at"
TEAM_ID = "team_id"  # rows of one co-sell team share it; empty for a solo attempt
COVERS_PRODUCT = "covers_product"  # team deals only: the deal requirements (products) this member covers

EVENT_KIND = "kind"
OCCURRED_AT = "occurred_at"

MESSAGE_ID = "message_id"
SENT_AT = "sent_at"
CHANNEL = "channel"
MESSAGE_TEXT = "text"

ColumnKind = Literal["str", "float", "int", "bool", "datetime", "list"]


@dataclass(frozen=True)
class TableSpec:
    """The columns a table must have and the kind of value each holds; `optional` may be empty and
    `may_be_absent` (a subset of `optional`) may be missing from a file altogether."""

    name: str
    columns: Mapping[str, ColumnKind]
    key: tuple[str, ...]
    optional: frozenset[str] = frozenset()
    may_be_absent: frozenset[str] = frozenset()

    @property
    def required_columns(self) -> list[str]:
        """The columns every file of this table has, in spec order."""
        return [column for column in self.columns if column not in self.may_be_absent]


PARTNERS = TableSpec(
    name="partners",
    columns={
        PARTNER_ID: "str",
        PARTNER_NAME: "str",
        PROFILE_TEXT: "str",
        HOME_REGION: "str",
        PARTNER_REGIONS: "list",
        CERTIFICATIONS: "list",
        TIER: "str",
        CAPACITY: "int",
        JOINED_AT: "datetime",
    },
    key=(PARTNER_ID,),
    optional=frozenset({CERTIFICATIONS}),
)
DEALS = TableSpec(
    name="deals",
    columns={
        DEAL_ID: "str",
        CREATED_AT: "datetime",
        SEGMENT: "str",
        DEAL_REGION: "str",
        DEAL_PRODUCTS: "list",
        REQUIREMENT_TEXT: "str",
        AMOUNT: "float",
        REGISTERED_PARTNER_ID: "str",
    },
    key=(DEAL_ID,),
    optional=frozenset({REGISTERED_PARTNER_ID}),
)
OUTCOMES = TableSpec(
    name="outcomes",
    columns={
        DEAL_ID: "str",
        PARTNER_ID: "str",
        WON: "bool",
        CLOSED_AT: "datetime",
        TEAM_ID: "str",
        COVERS_PRODUCT: "list",
    },
    key=(DEAL_ID, PARTNER_ID),
    optional=frozenset({TEAM_ID, COVERS_PRODUCT}),
    may_be_absent=frozenset({COVERS_PRODUCT}),  # ecosystems without team deals have no such column
)
ENGAGEMENT = TableSpec(
    name="engagement",
    columns={PARTNER_ID: "str", OCCURRED_AT: "datetime", EVENT_KIND: "str"},
    key=(),
)
COMMUNICATIONS = TableSpec(
    name="communications",
    columns={
        MESSAGE_ID: "str",
        PARTNER_ID: "str",
        SENT_AT: "datetime",
        CHANNEL: "str",
        MESSAGE_TEXT: "str",
    },
    key=(MESSAGE_ID,),
)
ECOSYSTEM_TABLES: tuple[TableSpec, ...] = (PARTNERS, DEALS, OUTCOMES, ENGAGEMENT, COMMUNICATIONS)

# --- typed records (one row of a table, for APIs and small fixtures) ---------------------------


def join_list(values: tuple[str, ...] | list[str]) -> str:
    """`("a", "b") -> "a|b"`: the stored form of a multi-valued cell."""
    return LIST_SEPARATOR.join(values)


def split_list(cell: str | None) -> tuple[str, ...]:
    """`"a|b" -> ("a", "b")`; empty or missing cells give `()`."""
    if not cell:
        return ()
    return tuple(part for part in str(cell).split(LIST_SEPARATOR) if part)


def format_certifications(levels: Mapping[str, int]) -> str:
    """`{"firewall": 2} -> "firewall:2"`; level-0 entries are dropped."""
    return join_list([f"{product}{LEVEL_SEPARATOR}{level}" for product, level in levels.items() if level > 0])


def parse_certifications(cell: str | None) -> dict[str, int]:
    """`"firewall:2|sd-wan:1" -> {"firewall": 2, "sd-wan": 1}`. Raises ValueError on a bad entry."""
    levels: dict[str, int] = {}
    for entry in split_list(cell):
        product, sep, level = entry.partition(LEVEL_SEPARATOR)
        if not sep or not level.isdigit() or not 0 <= int(level) <= MAX_CERT_LEVEL:
            raise ValueError(f"certification {entry!r} is not 'product:level' with level 0..{MAX_CERT_LEVEL}")
        levels[product] = int(level)
    return levels


@dataclass(frozen=True)
class Partner:
    partner_id: str
    name: str
    profile_text: str
    home_region: str
    regions: tuple[str, ...]
    certifications: Mapping[str, int]
    tier: str
    capacity: int
    joined_at: datetime


@dataclass(frozen=True)
class Deal:
    deal_id: str
    created_at: datetime
    segment: str
    region: str
    products: tuple[str, ...]
    requirement_text: str
    amount: float
    registered_partner_id: str | None = None


@dataclass(frozen=True)
class Outcome:
    deal_id: str
    partner_id: str
    won: bool
    closed_at: datetime
    team_id: str | None = None
    covers_product: tuple[str, ...] = ()


@dataclass(frozen=True)
class EngagementEvent:
    partner_id: str
    occurred_at: datetime
    kind: str


@dataclass(frozen=True)
class Communication:
    message_id: str
    partner_id: str
    sent_at: datetime
    channel: str
    text: str


@dataclass(frozen=True)
class Ecosystem:
    """All five tables of one ecosystem as pandas DataFrames (columns as in the TableSpecs)."""

    partners: pd.DataFrame
    deals: pd.DataFrame
    outcomes: pd.DataFrame
    engagement: pd.DataFrame
    communications: pd.DataFrame
