"""Prospects: partners a recruiter considers signing, as typed records, read from CSV or JSON.

A prospect is what is known about a partner at signing: its profile text, the products it sells,
its certifications (product -> level 1..3), the regions it operates in and its size (declared
capacity, deals it can work per 30 days). Current partners become prospects with
`partners_as_prospects`, so a model sees the same fields for both.

File layout (one prospect per CSV row, or a JSON list of objects with the same keys):
`prospect_id, profile_text, products, certifications, regions, capacity`; list cells are `|`-joined
in CSV (`"firewall|sd-wan"`, `"firewall:2"`) and may be lists in JSON. `prospect_id` is optional
(default: the row number). Every problem raises `features.io.DataError` naming the row and field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from features import schema, text
from features.io import DataError, row_number

PROSPECT_ID = "prospect_id"
PRODUCTS = "products"
CAPACITY = schema.CAPACITY
PROSPECT_FIELDS: tuple[str, ...] = (
    PROSPECT_ID,
    schema.PROFILE_TEXT,
    PRODUCTS,
    schema.CERTIFICATIONS,
    schema.PARTNER_REGIONS,
    CAPACITY,
)
REQUIRED_FIELDS: tuple[str, ...] = (schema.PROFILE_TEXT, PRODUCTS, schema.PARTNER_REGIONS, CAPACITY)
MIN_PROFILE_WORDS = 3  # fewer alphabetic words than this is no profile to compare
_WORD = re.compile(r"[A-Za-z]{2,}")


@dataclass(frozen=True)
class Prospect:
    """One prospect. `products` and `regions` are tuples of schema.PRODUCTS / schema.REGIONS (non-empty
    when read from a file; a current partner whose profile names no product has none);
    `certifications` maps a product to its level in 1..3; `capacity` is deals per 30 days, >= 1."""

    prospect_id: str
    profile_text: str
    products: tuple[str, ...]
    certifications: Mapping[str, int]
    regions: tuple[str, ...]
    capacity: int


def _as_list(value: Any) -> tuple[str, ...]:
    if value is None or (isinstance(value, float) and value != value):
        return ()
    if isinstance(value, list | tuple):
        return tuple(str(item).strip() for item in value if str(item).strip())
    return tuple(part.strip() for part in schema.split_list(str(value)) if part.strip())


def _check_vocabulary(values: tuple[str, ...], vocabulary: tuple[str, ...], what: str) -> str | None:
    unknown = [value for value in values if value not in vocabulary]
    if unknown:
        return f"unknown {what} {unknown[0]!r}; known: {', '.join(vocabulary)}"
    return None


def _certification_levels(levels: Mapping[Any, Any]) -> dict[str, int]:
    """`{"firewall": 2}` -> the same dict; ValueError for a level that is not a whole number in 0..MAX_CERT_LEVEL."""
    checked = {}
    for product, level in levels.items():
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= schema.MAX_CERT_LEVEL:
            limit = schema.MAX_CERT_LEVEL
            raise ValueError(f"certification {product!r}: level {level!r} is not a whole number 0..{limit}")
        checked[str(product)] = level
    return checked


def prospect_from_fields(fields: Mapping[str, Any], default_id: str) -> Prospect:
    """Validate one prospect's fields; raises ValueError("<field>: <reason>") for the first problem."""
    for name in REQUIRED_FIELDS:
        value = fields.get(name)
        if value is None or (isinstance(value, float) and value != value) or str(value).strip() in ("", "[]"):
            raise ValueError(f"{name}: missing or empty")
    profile = str(fields[schema.PROFILE_TEXT]).strip()
    if len(_WORD.findall(profile)) < MIN_PROFILE_WORDS:
        raise ValueError(f"{schema.PROFILE_TEXT}: unusable, fewer than {MIN_PROFILE_WORDS} words: {profile!r}")
    products = _as_list(fields[PRODUCTS])
    regions = _as_list(fields[schema.PARTNER_REGIONS])
    raw_certifications = fields.get(schema.CERTIFICATIONS)
    try:
        if isinstance(raw_certifications, Mapping):
            # Checked as given: joined into the `product:level` text, a key holding `|` or `:` could pass.
            certifications = _certification_levels(raw_certifications)
        else:
            certifications = schema.parse_certifications(schema.join_list(_as_list(raw_certifications)))
    except ValueError as error:
        raise ValueError(f"{schema.CERTIFICATIONS}: {error}") from error
    for name, problem in (
        (PRODUCTS, _check_vocabulary(products, schema.PRODUCTS, "product")),
        (schema.CERTIFICATIONS, _check_vocabulary(tuple(certifications), schema.PRODUCTS, "product")),
        (schema.PARTNER_REGIONS, _check_vocabulary(regions, schema.REGIONS, "region")),
    ):
        if problem:
            raise ValueError(f"{name}: {problem}")
    try:
        capacity = int(float(fields[CAPACITY]))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{CAPACITY}: {fields[CAPACITY]!r} is not a number") from error
    if capacity < 1:
        raise ValueError(f"{CAPACITY}: must be >= 1 deal per 30 days, got {capacity}")
    identifier = fields.get(PROSPECT_ID)
    has_id = identifier is not None and not (isinstance(identifier, float) and identifier != identifier)
    return Prospect(
        prospect_id=str(identifier).strip() if has_id and str(identifier).strip() else default_id,
        profile_text=profile,
        products=tuple(dict.fromkeys(products)),
        certifications={product: level for product, level in certifications.items() if level > 0},
        regions=tuple(dict.fromkeys(regions)),
        capacity=capacity,
    )


def read_prospects(path: Path) -> list[Prospect]:
    """Prospects from a .csv or .json file (layout in the module docstring).

    Raises DataError naming the file, the row (CSV line, or 0-based JSON index) and the field.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise DataError(path, f"unsupported file type {path.suffix!r}; expected .csv or .json")
    if not path.is_file():
        raise DataError(path, "file does not exist")
    records: list[dict[str, Any]]
    try:
        if suffix == ".csv":
            records = pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")
        else:
            loaded = json.loads(path.read_text())
            if not isinstance(loaded, list) or not all(isinstance(item, dict) for item in loaded):
                raise DataError(path, "expected a JSON list of prospect objects")
            records = loaded
    except (pd.errors.ParserError, pd.errors.EmptyDataError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(path, f"cannot be read: {error}") from error
    if not records:
        raise DataError(path, "no prospects in the file")
    prospects = []
    for index, record in enumerate(records):
        try:
            prospects.append(prospect_from_fields(record, default_id=str(row_number(path, index))))
        except ValueError as error:
            field, _, reason = str(error).partition(": ")
            raise DataError.at_data_row(path, index, field, reason) from error
    return prospects


def partners_as_prospects(partners: pd.DataFrame) -> list[Prospect]:
    """Current partners (a partners table) as prospects: products are those the profile mentions
    plus those certified; regions and capacity as declared."""
    prospects = []
    for row in partners.itertuples(index=False):
        fields = row._asdict()
        certifications = schema.parse_certifications(fields[schema.CERTIFICATIONS])
        products = text.mentioned_products(fields[schema.PROFILE_TEXT]) + tuple(
            product for product in schema.PRODUCTS if certifications.get(product, 0) > 0
        )
        prospects.append(
            Prospect(
                prospect_id=str(fields[schema.PARTNER_ID]),
                profile_text=str(fields[schema.PROFILE_TEXT]),
                products=tuple(dict.fromkeys(products)),
                certifications={product: level for product, level in certifications.items() if level > 0},
                regions=schema.split_list(fields[schema.PARTNER_REGIONS]),
                capacity=max(int(fields[schema.CAPACITY]), 1),
            )
        )
    return prospects


def prospects_frame(prospects: Sequence[Prospect]) -> pd.DataFrame:
    """Prospects as a table in the file layout (list cells `|`-joined), e.g. to write a CSV."""
    return pd.DataFrame(
        {
            PROSPECT_ID: [prospect.prospect_id for prospect in prospects],
            schema.PROFILE_TEXT: [prospect.profile_text for prospect in prospects],
            PRODUCTS: [schema.join_list(prospect.products) for prospect in prospects],
            schema.CERTIFICATIONS: [schema.format_certifications(prospect.certifications) for prospect in prospects],
            schema.PARTNER_REGIONS: [schema.join_list(prospect.regions) for prospect in prospects],
            CAPACITY: [prospect.capacity for prospect in prospects],
        }
    )
