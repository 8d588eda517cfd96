"""The only module that reads raw data files: validated tables, clear errors, atomic writes.

Every problem with a file surfaces as one `DataError` that names the file, the row and the column:
`deals.csv line 7, column created_at: 'yesterday' is not a date`. Rows are CSV line numbers (the
header is line 1, so data row i sits on line i + 2; a quoted cell with a line break shifts later
lines) or 0-based row indexes for Parquet. Validation is vectorised: the first bad row of a column
is found with a boolean mask, so files of a million rows validate in seconds.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from features.schema import (
    COMMUNICATIONS,
    DEAL_ID,
    DEALS,
    ECOSYSTEM_TABLES,
    ENGAGEMENT,
    OUTCOMES,
    PARTNER_ID,
    PARTNERS,
    REGISTERED_PARTNER_ID,
    ColumnKind,
    Ecosystem,
    TableSpec,
)

CSV_SUFFIX = ".csv"
PARQUET_SUFFIX = ".parquet"
TABLE_SUFFIXES: tuple[str, ...] = (CSV_SUFFIX, PARQUET_SUFFIX)
# Text files whose errors are numbered by line like CSV (e.g. tab-separated or `sentence@label` lines).
LINE_SUFFIXES: tuple[str, ...] = (CSV_SUFFIX, ".tsv", ".txt")
CSV_HEADER_LINES = 1

# Accepted spellings of a boolean cell, compared lower-cased and stripped.
BOOL_WORDS: Mapping[str, bool] = {
    "true": True,
    "1": True,
    "yes": True,
    "won": True,
    "false": False,
    "0": False,
    "no": False,
    "lost": False,
}


def _is_csv(path: Path | str) -> bool:
    return Path(path).suffix.lower() == CSV_SUFFIX


def row_number(path: Path | str, index: int) -> int:
    """How errors number 0-based data row `index`: CSV line index + 2 (header is line 1), else index."""
    return index + CSV_HEADER_LINES + 1 if _is_csv(path) else index


class DataError(ValueError):
    """A raw data file that cannot be used as it is.

    `row` is the 1-based line number of a CSV (header = line 1) or text file (LINE_SUFFIXES) or the
    0-based Parquet row index, None when the problem is not about one row; `column` is None when it
    is not about one column.
    """

    def __init__(self, path: Path | str, reason: str, *, row: int | None = None, column: str | None = None) -> None:
        self.path = Path(path)
        self.row = row
        self.column = column
        self.reason = reason
        super().__init__(self._message())

    @classmethod
    def at_data_row(cls, path: Path | str, index: int, column: str | None, reason: str) -> DataError:
        """The error for 0-based data row `index` of `path` (see `row_number`)."""
        return cls(path, reason, row=row_number(path, index), column=column)

    def _message(self) -> str:
        where = self.path.name
        if self.row is not None:
            line_numbered = self.path.suffix.lower() in LINE_SUFFIXES
            where += f" line {self.row}" if line_numbered else f" row {self.row} (0-based)"
        if self.column is not None:
            where += f", column {self.column}"
        return f"{where}: {self.reason}"


def fail_on_first(path: Path | str, values: pd.Series, bad: pd.Series, reason: Callable[[Any], str]) -> None:
    """Raise DataError at the first row where `bad` is True, if any.

    `values` is the column as read (its name is the column; its index labels are 0-based data-row
    indexes of the file) and `bad` a boolean mask aligned with it; `reason(value)` words the problem.
    """
    bad_array = bad.to_numpy(dtype=bool, na_value=False)
    if bad_array.any():
        position = int(bad_array.argmax())
        raise DataError.at_data_row(path, int(values.index[position]), str(values.name), reason(values.iloc[position]))


def _read_file(path: Path, **read_csv_kwargs: Any) -> pd.DataFrame:
    """Read a CSV or Parquet file as it is; any failure becomes a DataError naming the file."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(path, f"unsupported file type {path.suffix!r}; expected one of {', '.join(TABLE_SUFFIXES)}")
    if not path.is_file():
        raise DataError(path, "file does not exist" if not path.exists() else "not a regular file")
    try:
        if suffix == CSV_SUFFIX:
            return pd.read_csv(path, **read_csv_kwargs)
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError as exc:
        raise DataError(path, "file is empty") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, pa.ArrowException, OSError) as exc:
        raise DataError(path, f"cannot be read: {exc}") from exc


def _require_columns(path: Path, frame: pd.DataFrame, columns: Sequence[str]) -> None:
    for column in columns:
        if column not in frame.columns:
            present = ", ".join(map(str, frame.columns))
            raise DataError(path, f"missing column; the file has: {present}", column=column)


def read_csv_checked(path: Path, required_columns: Sequence[str], **read_csv_kwargs: Any) -> pd.DataFrame:
    """Read a public data set's CSV with `pd.read_csv(**read_csv_kwargs)`; shape (rows, file columns).

    Raises DataError when the file is missing, unreadable, not a .csv or lacks a required column.
    The index is a RangeIndex of data rows, so `DataError.at_data_row` maps it to line numbers.
    """
    path = Path(path)
    if not _is_csv(path):
        raise DataError(path, f"expected a {CSV_SUFFIX} file")
    frame = _read_file(path, **read_csv_kwargs)
    _require_columns(path, frame, required_columns)
    return frame


def _missing_mask(values: pd.Series) -> pd.Series:
    """True where a cell is empty: NA, or a string of only whitespace."""
    missing = values.isna()
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        missing |= values.astype("str").str.strip().eq("")
    return missing


def _parse_column(values: pd.Series, kind: ColumnKind, missing: pd.Series, path: Path) -> pd.Series:
    """`values` parsed to `kind`; missing cells become "" (str, list), NaN or NaT, or NA (int, bool)."""
    present = ~missing
    if kind in ("str", "list"):
        return values.astype("str").where(present, "")
    if kind in ("float", "int"):
        numbers = pd.to_numeric(values.where(present), errors="coerce")
        fail_on_first(path, values, numbers.isna() & present, lambda value: f"{value!r} is not a number")
        if kind == "float":
            return numbers.astype("float64")
        fail_on_first(path, values, numbers.mod(1).ne(0) & present, lambda value: f"{value!r} is not an integer")
        return numbers.astype("int64" if not missing.any() else "Int64")
    if kind == "bool":
        if pd.api.types.is_bool_dtype(values.dtype):
            flags = values.astype("boolean")
        elif pd.api.types.is_numeric_dtype(values.dtype):
            flags = values.map({1: True, 0: False}).astype("boolean")
        else:
            flags = values.astype("str").str.strip().str.lower().map(BOOL_WORDS).astype("boolean")
        words = "/".join(BOOL_WORDS)
        fail_on_first(path, values, flags.isna() & present, lambda value: f"{value!r} is not a boolean ({words})")
        return flags.astype("bool" if not missing.any() else "boolean")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        stamps = pd.to_datetime(values, utc=True)
    else:
        stamps = pd.to_datetime(values.where(present), errors="coerce", format="ISO8601", utc=True)
        fail_on_first(path, values, stamps.isna() & present, lambda value: f"{value!r} is not a date")
    return stamps.dt.tz_localize(None).astype("datetime64[ns]")


def validate_table(frame: pd.DataFrame, spec: TableSpec, path: Path) -> pd.DataFrame:
    """`frame` with every spec column parsed to its kind; extra columns are kept as they are.

    `path` names the source in errors and `frame`'s index labels are its 0-based data rows. Raises
    DataError for a missing column, a value that does not parse, an empty required cell or a
    repeated key; the first bad row of the first bad column (in spec order) is reported.
    """
    path = Path(path)
    _require_columns(path, frame, spec.required_columns)
    parsed = frame.copy()
    for column, kind in spec.columns.items():
        if column not in frame.columns:
            continue
        values = frame[column]
        missing = _missing_mask(values)
        if column not in spec.optional:
            fail_on_first(path, values, missing, lambda _value: "required value is empty")
        parsed[column] = _parse_column(values, kind, missing, path)
    if spec.key:
        keys = parsed[list(spec.key)]
        repeated = keys.duplicated(keep="first").to_numpy()
        if repeated.any():
            position = int(repeated.argmax())
            first = int((keys == keys.iloc[position]).all(axis=1).to_numpy().argmax())
            key_text = ", ".join(f"{name}={keys.iloc[position][name]!r}" for name in spec.key)
            first_row = row_number(path, int(keys.index[first]))
            unit = "line" if _is_csv(path) else "row"
            raise DataError.at_data_row(
                path,
                int(keys.index[position]),
                ", ".join(spec.key),
                f"duplicate key {key_text} (first on {unit} {first_row})",
            )
    return parsed


def read_table(path: Path, spec: TableSpec) -> pd.DataFrame:
    """Read and validate one table from .csv or .parquet; shape (rows, file columns), RangeIndex.

    Spec columns come back parsed (see `validate_table`): str/list -> str with "" for empty optional
    cells, float -> float64, int -> int64, bool -> bool, datetime -> naive datetime64[ns] (UTC when
    the file carries an offset). Extra columns are kept as read. No row is ever dropped.
    """
    path = Path(path)
    raw = _read_file(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    return validate_table(raw.reset_index(drop=True), spec, path)


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Call `write(temporary)` with a fresh name beside `path`, then rename it to `path`; returns `path`.

    Readers see the old file (or directory) or the new one, never half of one. The temporary name
    keeps `path`'s suffix last (np.save appends ".npy" to a name that lacks it). Parent directories
    are created; whatever a failed `write` left is removed. A directory cannot replace a non-empty
    one: the rename raises OSError, so processes racing to publish one directory can tell that
    another finished first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{secrets.token_hex(6)}.tmp{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)
        raise
    return path


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Write `frame` (without its index) to .parquet or .csv by suffix, atomically; returns `path`.

    Readers see the old file or the new one, never half of one (`write_atomically`). Parent
    directories are created.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(path, f"unsupported file type {path.suffix!r}; expected one of {', '.join(TABLE_SUFFIXES)}")
    if suffix == CSV_SUFFIX:
        return write_atomically(path, lambda temporary: frame.to_csv(temporary, index=False))
    return write_atomically(path, lambda temporary: frame.to_parquet(temporary, index=False))


def table_path(directory: Path, spec: TableSpec) -> Path:
    """Where `write_ecosystem` writes a table: `<directory>/<table name>.parquet`."""
    return Path(directory) / f"{spec.name}{PARQUET_SUFFIX}"


def find_table(directory: Path, spec: TableSpec) -> Path:
    """The file holding a table in an ecosystem directory: `<table name>.parquet` or `<table name>.csv`
    (a data scientist's own export comes in either). DataError when neither or both exist."""
    candidates = [Path(directory) / f"{spec.name}{suffix}" for suffix in (PARQUET_SUFFIX, CSV_SUFFIX)]
    present = [path for path in candidates if path.exists()]
    if len(present) == 2:
        raise DataError(present[0], f"both {present[0].name} and {present[1].name} exist; keep one")
    if not present:
        raise DataError(candidates[0], f"file does not exist (nor does {candidates[1].name})")
    return present[0]


def write_ecosystem(ecosystem: Ecosystem, directory: Path) -> dict[str, Path]:
    """Write the five tables of `ecosystem` as `<table>.parquet`; returns table name -> path."""
    return {
        spec.name: write_table(getattr(ecosystem, spec.name), table_path(directory, spec)) for spec in ECOSYSTEM_TABLES
    }


def _check_references(
    child: pd.DataFrame, column: str, parent_ids: pd.Series, child_path: Path, parent_path: Path
) -> None:
    """Every non-empty `child[column]` (read from `child_path`) must be a key of the parent table."""
    values = child[column]
    dangling = ~values.isin(parent_ids) & values.ne("")
    fail_on_first(child_path, values, dangling, lambda value: f"{value!r} is not in {parent_path.name}")


def read_ecosystem(directory: Path) -> Ecosystem:
    """Read and validate the five tables of an ecosystem directory, each `<table>.parquet` (as
    `write_ecosystem` writes them) or `<table>.csv` (an export), mixed freely.

    Beyond per-table validation: every outcome's deal and partner, every deal registration and every
    engagement event's and communication's partner must exist (DataError naming table, row, column).
    """
    paths = {spec.name: find_table(directory, spec) for spec in ECOSYSTEM_TABLES}
    tables = {spec.name: read_table(paths[spec.name], spec) for spec in ECOSYSTEM_TABLES}
    partner_ids = tables[PARTNERS.name][PARTNER_ID]
    deal_ids = tables[DEALS.name][DEAL_ID]
    references = (
        (OUTCOMES, DEAL_ID, deal_ids, DEALS),
        (OUTCOMES, PARTNER_ID, partner_ids, PARTNERS),
        (DEALS, REGISTERED_PARTNER_ID, partner_ids, PARTNERS),
        (ENGAGEMENT, PARTNER_ID, partner_ids, PARTNERS),
        (COMMUNICATIONS, PARTNER_ID, partner_ids, PARTNERS),
    )
    for child_spec, column, parent_ids, parent_spec in references:
        child_path, parent_path = paths[child_spec.name], paths[parent_spec.name]
        _check_references(tables[child_spec.name], column, parent_ids, child_path, parent_path)
    return Ecosystem(**tables)


def empty_table(spec: TableSpec) -> pd.DataFrame:
    """A zero-row frame with the spec's columns and the dtypes `read_table` returns."""
    dtypes: Mapping[ColumnKind, str] = {
        "str": "str",
        "list": "str",
        "float": "float64",
        "int": "int64",
        "bool": "bool",
        "datetime": "datetime64[ns]",
    }
    return pd.DataFrame({column: pd.Series([], dtype=dtypes[kind]) for column, kind in spec.columns.items()})
