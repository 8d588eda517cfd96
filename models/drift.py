"""Drift between a model's training window and recent traffic: population stability index (PSI) per
feature and for the predicted probability.

- `DriftReference`: per column, decile bin edges of the training window and the share of training rows
  in each bin; saved beside the model in its bundle (`drift_reference.json`) at training time.
- `psi(expected, actual)`: sum over bins of (actual - expected) * ln(actual / expected), shares floored
  at `PSI_FLOOR` so that an empty bin costs a finite amount. 0 for identical shares; >= 0.
- `drift_report(reference, columns)`: PSI for every column present in both, the largest, and a status:
  ok below 0.1, warn below 0.25, alert from 0.25 (the usual PSI rule of thumb).
- `html_report(report)`: a plain HTML table with inline SVG bars of training vs recent shares.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

DRIFT_REFERENCE_FILE = "drift_reference.json"
PREDICTION_COLUMN = "win_probability"  # the model's output, profiled like a feature
BINS = 10
PSI_FLOOR = 1e-4  # share given to an empty bin: one row in 10,000
WARN_PSI = 0.1
ALERT_PSI = 0.25
DriftLevel = Literal["ok", "warn", "alert", "unknown"]
OK: DriftLevel = "ok"
WARN: DriftLevel = "warn"
ALERT: DriftLevel = "alert"
UNKNOWN: DriftLevel = "unknown"
DRIFT_PSI_MAX_TAG = "drift_psi_max"  # model version tags: the last drift computed for the version
DRIFT_STATUS_TAG = "drift_status"


@dataclass(frozen=True)
class ColumnProfile:
    """A column's training distribution: `edges` (k - 1,) inner bin edges, increasing; `shares` (k,)
    share of training rows in each bin (sum 1). Bin i holds values in (edges[i-1], edges[i]]."""

    edges: tuple[float, ...]
    shares: tuple[float, ...]


@dataclass(frozen=True)
class DriftReference:
    window_start: str  # ISO time of the first training deal
    window_end: str  # ISO time of the last training deal
    rows: int
    columns: Mapping[str, ColumnProfile]

    def save(self, directory: Path) -> Path:
        """Write `drift_reference.json` into `directory`; returns its path."""
        path = Path(directory) / DRIFT_REFERENCE_FILE
        path.write_text(json.dumps(asdict(self), indent=1))
        return path


def read_reference(directory: Path) -> DriftReference | None:
    """The drift reference saved in a bundle directory; None for a bundle trained before it existed."""
    path = Path(directory) / DRIFT_REFERENCE_FILE
    if not path.is_file():
        return None
    raw = json.loads(path.read_text())
    columns = {
        name: ColumnProfile(tuple(column["edges"]), tuple(column["shares"])) for name, column in raw["columns"].items()
    }
    return DriftReference(raw["window_start"], raw["window_end"], int(raw["rows"]), columns)


def bin_shares(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """(len(edges) + 1,) share of `values` ((n,) finite floats) in each bin of `edges`; zeros for n = 0."""
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="left"), minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def column_profile(values: np.ndarray, bins: int = BINS) -> ColumnProfile:
    """Quantile bins of (n,) values (n >= 1): up to `bins` bins, fewer when values repeat (equal edges
    are merged, so a constant column has one bin)."""
    values = np.asarray(values, dtype=np.float64)
    edges = tuple(float(edge) for edge in np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])))
    return ColumnProfile(edges, tuple(float(share) for share in bin_shares(values, edges)))


def reference_of(
    columns: Mapping[str, np.ndarray], window_start: str, window_end: str, bins: int = BINS
) -> DriftReference:
    """The reference of a training window: name -> (n,) values of each feature and the prediction."""
    rows = {len(values) for values in columns.values()}
    if len(rows) != 1 or 0 in rows:
        raise ValueError(f"every column needs the same, non-zero number of rows; got {sorted(rows)}")
    profiles = {name: column_profile(values, bins) for name, values in columns.items()}
    return DriftReference(window_start, window_end, rows.pop(), profiles)


def psi(expected: np.ndarray, actual: np.ndarray, floor: float = PSI_FLOOR) -> float:
    """Population stability index of `actual` shares against `expected` shares ((k,) each, sums 1):
    sum((a - e) * ln(a / e)) with both floored at `floor`. >= 0; 0 when equal."""
    expected = np.maximum(np.asarray(expected, dtype=np.float64), floor)
    actual = np.maximum(np.asarray(actual, dtype=np.float64), floor)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def status_of(psi_max: float | None) -> DriftLevel:
    """ok (< 0.1), warn (< 0.25) or alert; unknown when drift was never computed."""
    if psi_max is None:
        return UNKNOWN
    return OK if psi_max < WARN_PSI else WARN if psi_max < ALERT_PSI else ALERT


@dataclass(frozen=True)
class ColumnDrift:
    psi: float
    expected: tuple[float, ...]  # training shares per bin
    actual: tuple[float, ...]  # recent shares per bin
    status: str


@dataclass(frozen=True)
class DriftReport:
    columns: Mapping[str, ColumnDrift]
    psi_max: float
    worst_column: str
    status: str
    rows: int  # recent rows compared
    reference_rows: int

    def as_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "psi_max": self.psi_max,
            "worst_column": self.worst_column,
            "rows": self.rows,
            "reference_rows": self.reference_rows,
            "thresholds": {"warn": WARN_PSI, "alert": ALERT_PSI},
            "psi": {name: column.psi for name, column in self.columns.items()},
        }


def drift_report(reference: DriftReference, recent: Mapping[str, np.ndarray]) -> DriftReport:
    """PSI of each column of `recent` (name -> (n,) values, n >= 1) that the reference profiles.
    Raises ValueError when no column is shared or there are no recent rows."""
    shared = [name for name in reference.columns if name in recent]
    rows = {len(recent[name]) for name in shared}
    if not shared or 0 in rows:
        raise ValueError("no recent rows in a column the training window profiles: nothing to compare")
    columns = {}
    for name in shared:
        profile = reference.columns[name]
        actual = bin_shares(np.asarray(recent[name], dtype=np.float64), profile.edges)
        value = psi(np.asarray(profile.shares), actual)
        columns[name] = ColumnDrift(value, profile.shares, tuple(float(share) for share in actual), status_of(value))
    worst = max(columns, key=lambda name: columns[name].psi)
    return DriftReport(columns, columns[worst].psi, worst, status_of(columns[worst].psi), max(rows), reference.rows)


def _bars_svg(expected: tuple[float, ...], actual: tuple[float, ...]) -> str:
    """Inline SVG: per bin, a grey bar (training share) beside a blue one (recent share)."""
    width, height, scale = 12, 40, max(*expected, *actual, 1e-9)
    bars = []
    for position, (before, after) in enumerate(zip(expected, actual, strict=True)):
        for offset, share, colour in ((0, before, "#999"), (5, after, "#2a6fdb")):
            bar_height = height * share / scale
            x, y = position * width + offset, height - bar_height
            bars.append(f'<rect x="{x}" y="{y:.1f}" width="5" height="{bar_height:.1f}" fill="{colour}"/>')
    return f'<svg width="{len(expected) * width}" height="{height}">{"".join(bars)}</svg>'


def html_report(report: DriftReport, title: str) -> str:
    """A self-contained HTML page: status, thresholds and one table row per column (PSI, status, bars
    of training vs recent shares per training-quantile bin), worst first."""
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{column.psi:.4f}</td><td>{column.status}</td>"
        f"<td>{_bars_svg(column.expected, column.actual)}</td></tr>"
        for name, column in sorted(report.columns.items(), key=lambda item: -item[1].psi)
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>status <b>{report.status}</b>: PSI max {report.psi_max:.4f} "
        f"({html.escape(report.worst_column)}); warn from {WARN_PSI}, alert from {ALERT_PSI}; "
        f"{report.rows:,} recent rows vs {report.reference_rows:,} training rows. Bars: grey training, "
        f"blue recent share per training decile.</p><table border='1' cellpadding='4'>"
        f"<tr><th>column</th><th>PSI</th><th>status</th><th>shares</th></tr>{rows}</table></body></html>"
    )
