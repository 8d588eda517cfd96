"""Lookalike data: entities, their profile text, when they were chosen, and who chose them.

The lookalike CSV has one row per (entity, chooser): `entity_id, text, date, chosen_by`, e.g. a
company, its description, its funding date and one investor that backed it. `read_lookalike`
validates it; `yc_lookalike` converts the Y Combinator startups file (SOURCE.md beside it) into it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.io import DataError, fail_on_first, read_csv_checked

ENTITY_ID = "entity_id"
TEXT = "text"
DATE = "date"
CHOSEN_BY = "chosen_by"
LOOKALIKE_COLUMNS: tuple[str, ...] = (ENTITY_ID, TEXT, DATE, CHOSEN_BY)

YC_COMPANY = "Company"
YC_DESCRIPTION = "Description"
YC_CATEGORIES = "Categories"
YC_YEAR = "Y Combinator Year"
YC_INVESTORS = "Investors"
YC_ITSELF = "Y Combinator"  # every company's first investor: it says nothing about fit
YC_DEFAULT_CUTOFF = "2012-01-01"
YC_DEFAULT_MIN_PORTFOLIO = 3


def read_lookalike(path: Path) -> pd.DataFrame:
    """The lookalike CSV as a frame of LOOKALIKE_COLUMNS (strings, DATE as datetime64), one row per
    (entity, chooser), duplicates dropped. Raises DataError naming the line and column of the first
    empty cell or unreadable date, or an entity whose rows disagree on text or date."""
    frame = read_csv_checked(Path(path), LOOKALIKE_COLUMNS, dtype=str, keep_default_na=False)
    frame = frame[list(LOOKALIKE_COLUMNS)]
    for column in LOOKALIKE_COLUMNS:
        values = frame[column].str.strip()
        fail_on_first(path, values.rename(column), values == "", lambda _: "empty cell")
        frame[column] = values
    dates = pd.to_datetime(frame[DATE], errors="coerce", format="mixed")
    fail_on_first(path, frame[DATE], dates.isna(), lambda value: f"{value!r} is not a date")
    frame[DATE] = dates
    per_entity = frame.groupby(ENTITY_ID)[[TEXT, DATE]].nunique()
    inconsistent = per_entity[(per_entity > 1).any(axis=1)]
    fail_on_first(
        path,
        frame[ENTITY_ID],
        frame[ENTITY_ID].isin(inconsistent.index),
        lambda value: f"the rows of entity {value!r} differ in text or date",
    )
    return frame.drop_duplicates([ENTITY_ID, CHOSEN_BY]).reset_index(drop=True)


def yc_lookalike(
    source: Path, out: Path, cutoff: str = YC_DEFAULT_CUTOFF, min_portfolio: int = YC_DEFAULT_MIN_PORTFOLIO
) -> pd.DataFrame:
    """Convert the YC startups CSV into a lookalike CSV at `out` and return it.

    entity = company; text = description and CrunchBase tags; date = January 1st of its YC batch
    year; chosen_by = each investor other than Y Combinator that backed at least `min_portfolio`
    companies from batches before `cutoff` (others could not be profiled). Companies without text
    or without such an investor have no rows.
    """
    source = Path(source)
    raw = read_csv_checked(source, (YC_COMPANY, YC_DESCRIPTION, YC_CATEGORIES, YC_YEAR, YC_INVESTORS))
    years = pd.to_numeric(raw[YC_YEAR], errors="coerce")
    fail_on_first(source, raw[YC_YEAR], years.isna(), lambda value: f"{value!r} is not a year")
    if min_portfolio < 1:
        raise DataError(source, f"min_portfolio must be >= 1, got {min_portfolio}")
    description = raw[YC_DESCRIPTION].fillna("").str.strip()
    tags = raw[YC_CATEGORIES].fillna("").str.strip()
    text = description.where(tags == "", description + " Tags: " + tags + ".").str.strip()
    rows = pd.DataFrame(
        {
            ENTITY_ID: raw[YC_COMPANY].astype(str).str.strip(),
            TEXT: text,
            DATE: pd.to_datetime(years.astype(int).astype(str) + "-01-01"),
            CHOSEN_BY: raw[YC_INVESTORS].fillna("").str.split(","),
        }
    ).explode(CHOSEN_BY)
    rows[CHOSEN_BY] = rows[CHOSEN_BY].fillna("").str.strip()
    rows = rows[(rows[TEXT] != "") & (rows[CHOSEN_BY] != "") & (rows[CHOSEN_BY] != YC_ITSELF)]
    rows = rows.drop_duplicates([ENTITY_ID, CHOSEN_BY])
    before = rows[rows[DATE] < pd.Timestamp(cutoff)]
    portfolio = before.groupby(CHOSEN_BY)[ENTITY_ID].nunique()
    kept = rows[rows[CHOSEN_BY].isin(portfolio[portfolio >= min_portfolio].index)].reset_index(drop=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    kept.assign(**{DATE: kept[DATE].dt.strftime("%Y-%m-%d")}).to_csv(out, index=False)
    return kept
