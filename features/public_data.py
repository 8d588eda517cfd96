"""Adapters for the public data sets in `shared/data` (each folder's SOURCE.md describes it).

- X Education `Leads.csv`: real B2C course leads -> a cleaned frame for lead scoring.
- Olist marketing funnel: real B2B MQLs -> a frame of pre-outcome MQL columns plus the label `won`.
- Maven CRM sales: a fictional B2B pipeline -> our `Ecosystem` schema (agents act as partners).

Every file is read through `features.io`, so problems surface as `DataError` with file, line and
column. The product never needs these files; they serve evaluation and tests only. Post-outcome
columns (leaks) are named here so that evaluations can exclude them, or add them on purpose to
show the leak.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from features import io
from features.schema import (
    AMOUNT,
    CAPACITY,
    CERTIFICATIONS,
    CLOSED_AT,
    COMMUNICATIONS,
    CREATED_AT,
    DEAL_ID,
    DEAL_PRODUCTS,
    DEAL_REGION,
    DEALS,
    ENGAGEMENT,
    HOME_REGION,
    JOINED_AT,
    OUTCOMES,
    PARTNER_ID,
    PARTNER_NAME,
    PARTNER_REGIONS,
    PARTNERS,
    PROFILE_TEXT,
    REGISTERED_PARTNER_ID,
    REQUIREMENT_TEXT,
    SEGMENT,
    TEAM_ID,
    TIER,
    WON,
    Ecosystem,
    TableSpec,
)

TRAIN_FILE = "train.csv"
TEST_FILE = "test.csv"
TRAIN_DIRECTORY = "train"
TEST_DIRECTORY = "test"

# Read public CSVs cell for cell: every value a string, empty cells "", blank lines kept as rows.
_RAW_CSV: Mapping[str, object] = {"dtype": str, "keep_default_na": False, "skip_blank_lines": False}

# --- X Education ---------------------------------------------------------------------------------

XEDUCATION_LABEL = "Converted"
XEDUCATION_LEAD_NUMBER = "Lead Number"  # increases with time: the only ordering the file has
XEDUCATION_ID_COLUMNS: tuple[str, ...] = ("Prospect ID", XEDUCATION_LEAD_NUMBER)
XEDUCATION_LEAKY_COLUMNS: tuple[str, ...] = (
    "Tags",
    "Lead Quality",
    "Last Activity",
    "Last Notable Activity",
    "Lead Profile",
    "Asymmetrique Activity Index",
    "Asymmetrique Profile Index",
    "Asymmetrique Activity Score",
    "Asymmetrique Profile Score",
)
XEDUCATION_NOT_ANSWERED = "Select"  # the form's placeholder: the lead did not answer
XEDUCATION_BINARY_WORDS: Mapping[str, float] = {"Yes": 1.0, "No": 0.0}
XEDUCATION_SPEC = TableSpec(
    name="xeducation leads",
    columns={"Prospect ID": "str", XEDUCATION_LEAD_NUMBER: "int", XEDUCATION_LABEL: "bool"},
    key=(XEDUCATION_LEAD_NUMBER,),
)


def load_xeducation(path: Path, drop_constant_columns: bool = True) -> pd.DataFrame:
    """X Education leads, cleaned; shape (leads, up to 37 columns), one row per line of the file.

    `Converted` is int 0/1 and `Lead Number` int64 (unique); "Select" becomes missing; columns that
    hold only Yes/No become float 0.0/1.0 (NaN where empty); other text columns stay str with NaN
    for missing. With `drop_constant_columns`, columns with a single value (missing counts as a
    value) are dropped; pass False to keep the file's columns (e.g. for a test file that must line
    up with a training file). Raises DataError for a missing file or column, an empty or non-0/1
    label, or a repeated Lead Number.
    """
    path = Path(path)
    raw = io.read_csv_checked(path, list(XEDUCATION_SPEC.columns), **_RAW_CSV)
    parsed = io.validate_table(raw, XEDUCATION_SPEC, path)
    leads = raw.replace({"": np.nan, XEDUCATION_NOT_ANSWERED: np.nan})
    leads[XEDUCATION_LEAD_NUMBER] = parsed[XEDUCATION_LEAD_NUMBER]
    leads[XEDUCATION_LABEL] = parsed[XEDUCATION_LABEL].astype("int64")
    for column in leads.columns.difference(list(XEDUCATION_SPEC.columns)):
        values = leads[column]
        present = values.dropna()
        if present.empty:
            continue
        if present.isin(list(XEDUCATION_BINARY_WORDS)).all():
            leads[column] = values.map(XEDUCATION_BINARY_WORDS).astype("float64")
            continue
        numbers = pd.to_numeric(present, errors="coerce")
        if numbers.notna().all():
            leads[column] = pd.to_numeric(values).astype("float64")
    if drop_constant_columns:
        constant = [
            column
            for column in leads.columns
            if column not in XEDUCATION_SPEC.columns and leads[column].nunique(dropna=False) <= 1
        ]
        leads = leads.drop(columns=constant)
    return leads


def split_xeducation(path: Path, out_dir: Path, test_fraction: float = 0.25) -> tuple[Path, Path]:
    """Split Leads.csv by Lead Number: the oldest `1 - test_fraction` of leads train, the rest test.

    The file has no timestamp, but Lead Number increases over time, so this is a time-ordered split.
    Writes `out_dir/train.csv` and `out_dir/test.csv` in the raw format of the input (same columns,
    cells as written), rows sorted by Lead Number; returns their paths.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    path = Path(path)
    raw = io.read_csv_checked(path, list(XEDUCATION_SPEC.columns), **_RAW_CSV)
    lead_numbers = io.validate_table(raw, XEDUCATION_SPEC, path)[XEDUCATION_LEAD_NUMBER]
    ordered = raw.iloc[np.argsort(lead_numbers.to_numpy(), kind="stable")]
    test_rows = round(len(ordered) * test_fraction)
    if not 0 < test_rows < len(ordered):
        raise ValueError(f"{len(ordered)} leads cannot be split with test_fraction={test_fraction}")
    train_rows = len(ordered) - test_rows
    out_dir = Path(out_dir)
    return (
        io.write_table(ordered.iloc[:train_rows], out_dir / TRAIN_FILE),
        io.write_table(ordered.iloc[train_rows:], out_dir / TEST_FILE),
    )


# --- Olist marketing funnel ----------------------------------------------------------------------

OLIST_MQL_FILE = "olist_marketing_qualified_leads_dataset.csv"
OLIST_CLOSED_DEALS_FILE = "olist_closed_deals_dataset.csv"
OLIST_MQL_ID = "mql_id"
OLIST_FIRST_CONTACT = "first_contact_date"
OLIST_LANDING_PAGE = "landing_page_id"
OLIST_ORIGIN = "origin"
OLIST_WON_DATE = "won_date"  # post-outcome: exists only for won MQLs
OLIST_LABEL = "won"
OLIST_UNKNOWN_ORIGIN = "unknown"
OLIST_CONTACT_FORMAT = "%d-%m-%Y"  # this copy passed through Excel: dd-mm-yyyy
OLIST_WON_FORMAT = "%d-%m-%Y %H:%M"
OLIST_MQL_SPEC = TableSpec(
    name="olist mqls",
    columns={OLIST_MQL_ID: "str", OLIST_FIRST_CONTACT: "str", OLIST_LANDING_PAGE: "str", OLIST_ORIGIN: "str"},
    key=(OLIST_MQL_ID,),
    optional=frozenset({OLIST_ORIGIN}),
)
OLIST_CLOSED_SPEC = TableSpec(
    name="olist closed deals", columns={OLIST_MQL_ID: "str", OLIST_WON_DATE: "str"}, key=(OLIST_MQL_ID,)
)


def _parse_dates(values: pd.Series, path: Path, date_format: str) -> pd.Series:
    """Strictly parse a str column with `date_format`; DataError at the first cell that does not match."""
    stamps = pd.to_datetime(values, format=date_format, errors="coerce")
    io.fail_on_first(path, values, stamps.isna(), lambda value: f"{value!r} is not a date in format {date_format}")
    return stamps.astype("datetime64[ns]")


def _read_olist(directory: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Both raw Olist files (all str) and the parsed first-contact dates; closed deals checked against MQLs."""
    directory = Path(directory)
    mql_path, closed_path = directory / OLIST_MQL_FILE, directory / OLIST_CLOSED_DEALS_FILE
    mqls = io.read_csv_checked(mql_path, list(OLIST_MQL_SPEC.columns), **_RAW_CSV)
    io.validate_table(mqls, OLIST_MQL_SPEC, mql_path)
    closed = io.read_csv_checked(closed_path, list(OLIST_CLOSED_SPEC.columns), **_RAW_CSV)
    io.validate_table(closed, OLIST_CLOSED_SPEC, closed_path)
    closed_ids = closed[OLIST_MQL_ID]
    io.fail_on_first(
        closed_path,
        closed_ids,
        ~closed_ids.isin(mqls[OLIST_MQL_ID]),
        lambda value: f"{value!r} is not in {OLIST_MQL_FILE}",
    )
    return mqls, closed, _parse_dates(mqls[OLIST_FIRST_CONTACT], mql_path, OLIST_CONTACT_FORMAT)


def load_olist(directory: Path) -> pd.DataFrame:
    """Olist MQLs with pre-outcome columns and the label; shape (MQLs, 5), one row per MQL.

    Columns: mql_id (str), first_contact_date (datetime64[ns], a day), landing_page_id (str),
    origin (str; empty -> "unknown"), won (bool: the MQL appears in the closed deals). No closed-deal
    column is returned: all of them are filled in after the win and would leak the label.
    """
    mqls, closed, first_contact = _read_olist(directory)
    return pd.DataFrame(
        {
            OLIST_MQL_ID: mqls[OLIST_MQL_ID],
            OLIST_FIRST_CONTACT: first_contact,
            OLIST_LANDING_PAGE: mqls[OLIST_LANDING_PAGE],
            OLIST_ORIGIN: mqls[OLIST_ORIGIN].mask(mqls[OLIST_ORIGIN].str.strip().eq(""), OLIST_UNKNOWN_ORIGIN),
            OLIST_LABEL: mqls[OLIST_MQL_ID].isin(closed[OLIST_MQL_ID]),
        }
    )


def load_olist_won_dates(directory: Path) -> pd.Series:
    """When each won MQL was won: datetime64[ns] (to the minute) indexed by mql_id, one entry per won MQL.

    Post-outcome data: for measuring conversion lags and censoring, never for features.
    """
    directory = Path(directory)
    _, closed, _ = _read_olist(directory)
    won_at = _parse_dates(closed[OLIST_WON_DATE], directory / OLIST_CLOSED_DEALS_FILE, OLIST_WON_FORMAT)
    return pd.Series(won_at.to_numpy(), index=pd.Index(closed[OLIST_MQL_ID], name=OLIST_MQL_ID), name=OLIST_WON_DATE)


def split_olist(directory: Path, out_dir: Path, cutoff: str = "2018-02-01") -> tuple[Path, Path]:
    """Time-ordered split: MQLs first contacted before `cutoff` train, the others test.

    Writes `out_dir/train/` and `out_dir/test/`, each with both CSVs in the original format; a closed
    deal goes where its MQL goes. Returns (train directory, test directory). Raises ValueError when
    a side would be empty. The default fits the copy in shared/data, which holds MQLs contacted
    before 2018-03-01 only.
    """
    mqls, closed, first_contact = _read_olist(directory)
    is_train = first_contact < pd.Timestamp(cutoff)
    if is_train.all() or not is_train.any():
        raise ValueError(
            f"cutoff {cutoff} leaves one side empty: first contacts run "
            f"{first_contact.min():%Y-%m-%d}..{first_contact.max():%Y-%m-%d}"
        )
    train_ids = mqls.loc[is_train, OLIST_MQL_ID]
    closed_in_train = closed[OLIST_MQL_ID].isin(train_ids)
    out_dir = Path(out_dir)
    directories = []
    for name, mql_rows, closed_rows in (
        (TRAIN_DIRECTORY, is_train, closed_in_train),
        (TEST_DIRECTORY, ~is_train, ~closed_in_train),
    ):
        io.write_table(mqls[mql_rows], out_dir / name / OLIST_MQL_FILE)
        io.write_table(closed[closed_rows], out_dir / name / OLIST_CLOSED_DEALS_FILE)
        directories.append(out_dir / name)
    return directories[0], directories[1]


# --- Maven CRM sales -----------------------------------------------------------------------------

MAVEN_PIPELINE_FILE = "sales_pipeline.csv"
MAVEN_TEAMS_FILE = "sales_teams.csv"
MAVEN_ACCOUNTS_FILE = "accounts.csv"
MAVEN_PRODUCTS_FILE = "products.csv"
MAVEN_LEAK_COLUMN = "close_value"  # 0 exactly when the deal is lost: ROC-AUC 1.0 if used as a feature
MAVEN_CLOSED_STAGES: Mapping[str, bool] = {"Won": True, "Lost": False}
MAVEN_OPEN_STAGES: tuple[str, ...] = ("Engaging", "Prospecting")
MAVEN_PRODUCT_FIXES: Mapping[str, str] = {"GTXPro": "GTX Pro"}
MAVEN_SECTOR_FIXES: Mapping[str, str] = {"technolgy": "technology"}
MAVEN_AGENT_TIER = "registered"
MAVEN_AGENT_CAPACITY = 20  # deals per schema.LOAD_WINDOW for every agent; the data has no capacity (agents close ~16)

MAVEN_PIPELINE_SPEC = TableSpec(
    name="maven closed opportunities",
    columns={
        "opportunity_id": "str",
        "sales_agent": "str",
        "product": "str",
        "account": "str",
        "deal_stage": "str",
        "engage_date": "datetime",
        "close_date": "datetime",
    },
    key=("opportunity_id",),
)
MAVEN_TEAMS_SPEC = TableSpec(
    name="maven sales teams",
    columns={"sales_agent": "str", "manager": "str", "regional_office": "str"},
    key=("sales_agent",),
)
MAVEN_ACCOUNTS_SPEC = TableSpec(name="maven accounts", columns={"account": "str", "sector": "str"}, key=("account",))
MAVEN_PRODUCTS_SPEC = TableSpec(
    name="maven products", columns={"product": "str", "sales_price": "float"}, key=("product",)
)


def _read_lookup(path: Path, spec: TableSpec) -> pd.DataFrame:
    """A small validated lookup table indexed by its key column."""
    raw = io.read_csv_checked(path, list(spec.columns), **_RAW_CSV)
    return io.validate_table(raw, spec, path).set_index(spec.key[0])


def _read_maven_closed(directory: Path, extra_columns: Sequence[str] = ()) -> pd.DataFrame:
    """The closed (Won/Lost) pipeline rows, validated; index = data-row index in the pipeline file.

    Open deals (Engaging, Prospecting) are left out; any other stage is a DataError.
    """
    path = Path(directory) / MAVEN_PIPELINE_FILE
    pipeline = io.read_csv_checked(path, [*MAVEN_PIPELINE_SPEC.columns, *extra_columns], **_RAW_CSV)
    stages = pipeline["deal_stage"]
    known = [*MAVEN_CLOSED_STAGES, *MAVEN_OPEN_STAGES]
    io.fail_on_first(path, stages, ~stages.isin(known), lambda value: f"{value!r} is not one of {', '.join(known)}")
    closed = pipeline[stages.isin(list(MAVEN_CLOSED_STAGES))]
    return io.validate_table(closed, MAVEN_PIPELINE_SPEC, path)


def _lookup(values: pd.Series, table: pd.DataFrame, column: str, path: Path, table_file: str) -> pd.Series:
    """`table[column]` for each of `values`; DataError at the first value that is not in the table."""
    io.fail_on_first(path, values, ~values.isin(table.index), lambda value: f"{value!r} is not in {table_file}")
    return values.map(table[column])


def load_maven(directory: Path) -> Ecosystem:
    """The Maven CRM closed deals as an Ecosystem: 30 agents as partners, 6,711 deals, one outcome each.

    partners: agents with a closed deal; partner_id = name = agent, home_region = regions = office
    (lower-cased), tier "registered", capacity MAVEN_AGENT_CAPACITY, joined_at = the day before the
    first engage date. deals: deal_id = opportunity_id, created_at = engage_date, products = the
    product (`GTXPro` -> `GTX Pro`), region = the agent's office, segment = the account's sector
    (`technolgy` -> `technology`), amount = the product's list price (USD; close_value is a leak),
    no registered partner. outcomes: (deal, agent, won, closed_at = close_date), solo. engagement
    and communications are empty. close_value appears in no table (see `load_maven_close_values`).
    """
    directory = Path(directory)
    pipeline_path = directory / MAVEN_PIPELINE_FILE
    closed = _read_maven_closed(directory)
    teams = _read_lookup(directory / MAVEN_TEAMS_FILE, MAVEN_TEAMS_SPEC)
    accounts = _read_lookup(directory / MAVEN_ACCOUNTS_FILE, MAVEN_ACCOUNTS_SPEC)
    products = _read_lookup(directory / MAVEN_PRODUCTS_FILE, MAVEN_PRODUCTS_SPEC)

    product = closed["product"].replace(dict(MAVEN_PRODUCT_FIXES))
    office = _lookup(closed["sales_agent"], teams, "regional_office", pipeline_path, MAVEN_TEAMS_FILE)
    sector = _lookup(closed["account"], accounts, "sector", pipeline_path, MAVEN_ACCOUNTS_FILE)
    sector = sector.replace(dict(MAVEN_SECTOR_FIXES))
    deals = pd.DataFrame(
        {
            DEAL_ID: closed["opportunity_id"],
            CREATED_AT: closed["engage_date"],
            SEGMENT: sector,
            DEAL_REGION: office.str.lower(),
            DEAL_PRODUCTS: product,
            REQUIREMENT_TEXT: product + " for a " + sector + " account",
            AMOUNT: _lookup(product, products, "sales_price", pipeline_path, MAVEN_PRODUCTS_FILE),
            REGISTERED_PARTNER_ID: "",
        }
    )
    outcomes = pd.DataFrame(
        {
            DEAL_ID: closed["opportunity_id"],
            PARTNER_ID: closed["sales_agent"],
            WON: closed["deal_stage"].map(MAVEN_CLOSED_STAGES),
            CLOSED_AT: closed["close_date"],
            TEAM_ID: "",
        }
    )
    agents = teams[teams.index.isin(closed["sales_agent"])]
    partners = pd.DataFrame(
        {
            PARTNER_ID: agents.index,
            PARTNER_NAME: agents.index,
            PROFILE_TEXT: "Sales agent at the " + agents["regional_office"] + " office, team of " + agents["manager"],
            HOME_REGION: agents["regional_office"].str.lower(),
            PARTNER_REGIONS: agents["regional_office"].str.lower(),
            CERTIFICATIONS: "",
            TIER: MAVEN_AGENT_TIER,
            CAPACITY: MAVEN_AGENT_CAPACITY,
            JOINED_AT: closed["engage_date"].min() - pd.Timedelta(days=1),
        }
    ).reset_index(drop=True)
    tables: dict[str, pd.DataFrame] = {
        PARTNERS.name: io.validate_table(partners, PARTNERS, directory / MAVEN_TEAMS_FILE),
        DEALS.name: io.validate_table(deals, DEALS, pipeline_path),
        OUTCOMES.name: io.validate_table(outcomes, OUTCOMES, pipeline_path),
        ENGAGEMENT.name: io.empty_table(ENGAGEMENT),
        COMMUNICATIONS.name: io.empty_table(COMMUNICATIONS),
    }
    return Ecosystem(**{name: table.reset_index(drop=True) for name, table in tables.items()})


def load_maven_close_values(directory: Path) -> pd.Series:
    """close_value (USD, >= 0; 0 for every lost deal) of the closed deals, indexed by deal_id.

    A post-outcome leak, kept out of `load_maven`: a leak test adds it to show ROC-AUC ~1.0.
    """
    directory = Path(directory)
    closed = _read_maven_closed(directory, [MAVEN_LEAK_COLUMN])
    spec = TableSpec(name="maven close values", columns={MAVEN_LEAK_COLUMN: "float"}, key=())
    values = io.validate_table(closed, spec, directory / MAVEN_PIPELINE_FILE)[MAVEN_LEAK_COLUMN]
    return pd.Series(values.to_numpy(), index=pd.Index(closed["opportunity_id"], name=DEAL_ID), name=MAVEN_LEAK_COLUMN)
