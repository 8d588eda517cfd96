"""The inference half of partner health (`partnermatch-health`); `training.health` fits it.

Two answers per partner, from its point-in-time features (`features.health`):
- a health score in [0, 100]: a weighted mean of four component percentiles (engagement trend,
  recent message sentiment, pipeline trend, win-rate trend), each the partner's percentile among
  the training rows (a missing sentiment, no recent messages, counts as the median, 50). Weights
  are the fitted logistic-regression coefficients of the components on 90-day disengagement,
  clipped at 0 and normalised to sum to 1. Bands: `at_risk` below `at_risk_below`, `watch` below
  `watch_below`, else `healthy` (cut-offs chosen by `training.health`);
- the probability of starting a disengagement episode in the next 90 days: a calibrated LightGBM
  model (`models.win.WinModel`: booster + calibrator) with TreeSHAP reasons.

The bundle also carries the snapshot the service answers from: every partner's features as of the
end of the training data, its programme KPIs (`features.kpis`), and its recent history (the
features at monthly as-of times, HISTORY_MONTHS of them, for trend plots).

On disk (no pickles): `health_manifest.json`, `disengagement/` (LightGBM text + JSON calibrator),
`snapshot.parquet`, `kpis.parquet`, `history.parquet`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import schema
from features.health import (
    AS_OF,
    ENGAGEMENT_30D,
    ENGAGEMENT_TREND,
    HEALTH_REASONS,
    PIPELINE_TREND,
    SENTIMENT_RECENT,
    WIN_RATE_TREND,
)
from features.pairs import FeatureError
from features.progress import SILENT, Progress
from models.registry import CHAMPION, REGISTERED_HEALTH_MODEL, Paths, RegisteredVersion, local_bundle, version_by_alias
from models.win import Reason, WinModel

FORMAT_VERSION = 2  # 2: history.parquet
MANIFEST_FILE = "health_manifest.json"
MODEL_DIR = "disengagement"
SNAPSHOT_FILE = "snapshot.parquet"
KPIS_FILE = "kpis.parquet"
HISTORY_FILE = "history.parquet"
HISTORY_MONTHS = 12  # monthly points per partner in the history (the last one is the snapshot time)
# The history's series: name -> feature (engagement events in the last 30 days, mean message polarity
# of the last 60 days in [-1, 1], NaN without messages).
HISTORY_SERIES: dict[str, str] = {"engagement_30d": ENGAGEMENT_30D, "sentiment": SENTIMENT_RECENT}
BANDS = ("healthy", "watch", "at_risk")
# The score's components: name -> the feature it ranks (higher = healthier).
COMPONENTS: dict[str, str] = {
    "engagement": ENGAGEMENT_TREND,
    "sentiment": SENTIMENT_RECENT,
    "pipeline": PIPELINE_TREND,
    "win_rate": WIN_RATE_TREND,
}
MISSING_PERCENTILE = 50.0
HORIZON_DAYS = 90


class UnknownPartnersError(FeatureError):
    """Partner ids the health snapshot does not have (HTTP 404)."""


@dataclass(frozen=True)
class HealthScorer:
    """Component percentiles -> score -> band. `reference[c]` is the sorted (r,) float64 training
    values of component c's feature (NaN dropped); `weights[c]` >= 0, summing to 1."""

    reference: dict[str, np.ndarray]
    weights: dict[str, float]
    at_risk_below: float
    watch_below: float

    def components(self, features: pd.DataFrame) -> pd.DataFrame:
        """(n, 4) percentiles in [0, 100] per component (MISSING_PERCENTILE where the feature is NaN)."""
        columns = {}
        for name, feature in COMPONENTS.items():
            values = features[feature].to_numpy(dtype=np.float64)
            reference = self.reference[name]
            # Mid-rank percentile: ties count half, so a constant reference puts everyone at 50.
            below = np.searchsorted(reference, values, side="left")
            at_most = np.searchsorted(reference, values, side="right")
            percentile = 100.0 * (below + at_most) / (2.0 * max(reference.size, 1))
            columns[name] = np.where(np.isnan(values), MISSING_PERCENTILE, percentile)
        return pd.DataFrame(columns, index=features.index)

    def score(self, components: pd.DataFrame) -> np.ndarray:
        """(n,) health score in [0, 100] from `components` percentiles."""
        return np.asarray(
            sum(self.weights[name] * components[name].to_numpy() for name in COMPONENTS), dtype=np.float64
        )

    def bands(self, scores: np.ndarray) -> np.ndarray:
        """(n,) BANDS label per score."""
        return np.where(scores < self.at_risk_below, "at_risk", np.where(scores < self.watch_below, "watch", "healthy"))


@dataclass(frozen=True)
class PartnerHealth:
    partner_id: str
    as_of: str  # ISO date the features describe
    score: float  # [0, 100], higher = healthier
    band: str  # one of BANDS
    disengagement_probability: float  # [0, 1], next HORIZON_DAYS days
    reasons: list[Reason]  # top TreeSHAP contributions to the disengagement log-odds
    components: dict[str, float]  # component -> percentile in [0, 100]
    trends: dict[str, float | None]  # feature -> value (None: no events to compute it)


@dataclass(frozen=True)
class HealthModel:
    disengagement: WinModel
    scorer: HealthScorer
    snapshot: pd.DataFrame  # one row per partner: PARTNER_ID, AS_OF, HEALTH_FEATURES
    kpis: pd.DataFrame  # one row per partner: features.kpis columns + RECOMMENDATION
    history: pd.DataFrame  # HISTORY_MONTHS rows per partner: PARTNER_ID, AS_OF, HISTORY_SERIES features
    summary: dict[str, Any] = field(default_factory=dict)  # cohorts, factors, tier thresholds, metrics

    def probability(self, features: pd.DataFrame) -> np.ndarray:
        """(n,) calibrated probability of a disengagement episode starting in the next 90 days."""
        return self.disengagement.predict_win_probability(features)

    def _rows(self, table: pd.DataFrame, partner_ids: list[str]) -> pd.DataFrame:
        indexed = table.set_index(schema.PARTNER_ID, drop=False)
        unknown = [partner for partner in partner_ids if partner not in indexed.index]
        if unknown:
            shown = ", ".join(repr(partner) for partner in unknown[:10])
            raise UnknownPartnersError("partner_ids", f"unknown partner id(s) {shown} ({len(unknown)} in all)")
        return indexed.loc[partner_ids]

    def assess(self, partner_ids: list[str], reasons: int = 3) -> list[PartnerHealth]:
        """Health of these partners as of the snapshot; UnknownPartnersError names unknown ids."""
        rows = self._rows(self.snapshot, partner_ids)
        components = self.scorer.components(rows)
        scores = self.scorer.score(components)
        bands = self.scorer.bands(scores)
        probabilities = self.probability(rows)
        explained = self.disengagement.explain(rows, top_k=reasons)
        trend_columns = [*COMPONENTS.values()]
        return [
            PartnerHealth(
                partner_id=str(partner),
                as_of=pd.Timestamp(rows[AS_OF].iloc[row]).date().isoformat(),
                score=float(scores[row]),
                band=str(bands[row]),
                disengagement_probability=float(probabilities[row]),
                reasons=explained[row],
                components={name: float(components[name].iloc[row]) for name in COMPONENTS},
                trends={
                    column: None if np.isnan(value) else float(value)
                    for column, value in zip(
                        trend_columns, rows[trend_columns].iloc[row].to_numpy(dtype=float), strict=True
                    )
                },
            )
            for row, partner in enumerate(partner_ids)
        ]

    def most_at_risk(self, limit: int, reasons: int = 3) -> list[PartnerHealth]:
        """The `limit` partners of the snapshot with the highest disengagement probability, highest
        first (ties by partner id), assessed with their reasons."""
        probabilities = self.probability(self.snapshot)
        ids = self.snapshot[schema.PARTNER_ID].astype(str).to_numpy()
        order = np.lexsort((ids, -probabilities))[:limit]
        return self.assess(ids[order].tolist(), reasons)

    def partner_history(self, partner_id: str) -> pd.DataFrame:
        """AS_OF and the HISTORY_SERIES features of one partner, oldest first; UnknownPartnersError when unknown."""
        self._rows(self.snapshot, [partner_id])
        rows = self.history[self.history[schema.PARTNER_ID] == partner_id].sort_values(AS_OF)
        return rows[[AS_OF, *HISTORY_SERIES.values()]].reset_index(drop=True)

    def partner_kpis(self, partner_id: str) -> dict[str, Any]:
        """The KPI row of one partner as JSON-ready values; UnknownPartnersError when unknown."""
        row = self._rows(self.kpis, [partner_id]).iloc[0]
        return {column: _plain(value) for column, value in row.items()}

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.disengagement.save(directory / MODEL_DIR)
        self.snapshot.to_parquet(directory / SNAPSHOT_FILE, index=False)
        self.kpis.to_parquet(directory / KPIS_FILE, index=False)
        self.history.to_parquet(directory / HISTORY_FILE, index=False)
        manifest = {
            "format_version": FORMAT_VERSION,
            "reference": {name: values.tolist() for name, values in self.scorer.reference.items()},
            "weights": self.scorer.weights,
            "at_risk_below": self.scorer.at_risk_below,
            "watch_below": self.scorer.watch_below,
            "summary": self.summary,
        }
        (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))  # last: marks a complete model
        return directory

    @classmethod
    def load(cls, directory: Path) -> HealthModel:
        """Read what `save` wrote; ValueError naming the directory when it is not a health model."""
        directory = Path(directory)
        path = directory / MANIFEST_FILE
        if not path.is_file():
            raise ValueError(f"{directory} is not a health model: {MANIFEST_FILE} is missing")
        manifest = json.loads(path.read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{directory} holds health format {manifest.get('format_version')}; this code reads {FORMAT_VERSION}"
            )
        scorer = HealthScorer(
            reference={name: np.asarray(values, dtype=np.float64) for name, values in manifest["reference"].items()},
            weights={name: float(weight) for name, weight in manifest["weights"].items()},
            at_risk_below=float(manifest["at_risk_below"]),
            watch_below=float(manifest["watch_below"]),
        )
        return cls(
            disengagement=WinModel.load(directory / MODEL_DIR, reasons=HEALTH_REASONS),
            scorer=scorer,
            snapshot=pd.read_parquet(directory / SNAPSHOT_FILE),
            kpis=pd.read_parquet(directory / KPIS_FILE),
            history=pd.read_parquet(directory / HISTORY_FILE),
            summary=dict(manifest["summary"]),
        )


def _plain(value: Any) -> Any:
    """A numpy or pandas scalar as a JSON-ready Python value (NaN -> None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


HEALTH_BATCH = 500  # partners per TreeSHAP call in `assess_all`


def assess_all(model: HealthModel, progress: Progress = SILENT) -> list[PartnerHealth]:
    """`assess` for every partner of the snapshot, in batches, reporting progress."""
    partner_ids = model.snapshot[schema.PARTNER_ID].astype(str).tolist()
    assessed: list[PartnerHealth] = []
    for start in range(0, len(partner_ids), HEALTH_BATCH):
        progress.count(start, len(partner_ids))
        assessed.extend(model.assess(partner_ids[start : start + HEALTH_BATCH]))
    progress.count(len(partner_ids), len(partner_ids))
    return assessed


def load_champion(paths: Paths) -> tuple[HealthModel, RegisteredVersion]:
    """`partnermatch-health@champion` and its version; ValueError naming the command that trains one."""
    version = version_by_alias(paths, REGISTERED_HEALTH_MODEL, CHAMPION)
    if version is None:
        raise ValueError(
            f"no {REGISTERED_HEALTH_MODEL}@{CHAMPION} is registered: run `partnermatch train-health` first"
        )
    return HealthModel.load(local_bundle(paths, version)), version
