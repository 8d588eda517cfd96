"""The inference half of the ideal-partner-profile (IPP) model: how well a prospect fits the
profile of the partners who actually win.

A LightGBM regression (fitted by `training.ipp`) predicts a partner's realised first-year win rate
from what is known at signing: structured attributes (certifications, products, regions, declared
capacity) and how close its profile embedding is to current top performers, per product, per region
and overall (exact cosine; FAISS, `features.index.PartnerIndex`, finds the evidence). Scoring a prospect returns:
- `fit_score`: the expected first-year win rate, in percent (0-100);
- `percentile`: the share of current partners (in percent) whose expected win rate is lower;
- evidence: the nearest top performers, with their realised win rates;
- the attributes that raise and lower the score (TreeSHAP contributions, in win-rate points);
- the white-space cells (product x region) it would fill, and the expected days to a first win.

Saved as LightGBM text, JSON and `.npy` arrays (no pickles); `MANIFEST_FILE` is written last.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from features import schema
from features.embed import Encoder
from features.index import PartnerIndex
from features.performance import CELL_REGION, PRODUCT
from features.progress import SILENT, Progress
from features.prospects import Prospect
from models.registry import CHAMPION, REGISTERED_IPP_MODEL, Paths, RegisteredVersion, local_bundle, version_by_alias

FORMAT_VERSION = 1
BOOSTER_FILE = "ipp_booster.txt"
MANIFEST_FILE = "ipp.json"
REFERENCE_IDS_FILE = "reference_ids.npy"
REFERENCE_VECTORS_FILE = "reference_vectors.npy"
REFERENCE_WIN_RATES_FILE = "reference_win_rates.npy"
PARTNER_SCORES_FILE = "partner_scores.npy"
PREDICT_THREADS = 1
SCORE_BATCH = 256  # prospects embedded and scored together
NEIGHBOURS = 5  # similarity to a group = mean cosine of the prospect's 5 nearest members
SIMILARITY_CHUNK = 1024  # queries per (chunk, m) cosine block: bounds memory when training on many partners

TOP_GROUP = "top"
BOTTOM_GROUP = "bottom"
PRODUCT_GROUP_PREFIX = "product:"
REGION_GROUP_PREFIX = "region:"

# Feature name -> (why it raises the score, why it lowers it).
FEATURE_REASONS: Mapping[str, tuple[str, str]] = {
    "certified_products": ("certified in many products", "certified in few products"),
    "mean_certification_level": ("high certification levels", "low certification levels"),
    "max_certification_level": ("holds an expert-level certification", "no advanced certification"),
    "products": ("sells many products", "sells few products"),
    "regions": ("operates in the regions that suit it", "regional footprint unlike winners'"),
    "log_capacity": ("capacity like the winners'", "capacity unlike the winners'"),
    "tenure_at_start_days": ("past the new-partner ramp-up", "new partners ramp up slowly"),
    "certified_deal_flow": (
        "certified for much of the deal flow in its regions",
        "certified for little of the deal flow in its regions",
    ),
    "sold_deal_flow": ("sells what its regions buy", "sells little of what its regions buy"),
    "similarity_top_products": (
        "profile close to the top performers in its products",
        "profile far from the top performers in its products",
    ),
    "similarity_top_regions": (
        "profile close to the top performers in its regions",
        "profile far from the top performers in its regions",
    ),
    "similarity_top_overall": ("profile close to the top performers", "profile far from the top performers"),
    "similarity_gap": (
        "closer to top than to bottom performers",
        "closer to bottom than to top performers",
    ),
}
ATTRIBUTE_FEATURES: tuple[str, ...] = (
    "certified_products",
    "mean_certification_level",
    "max_certification_level",
    "products",
    "regions",
    "log_capacity",
    "tenure_at_start_days",
    "certified_deal_flow",
    "sold_deal_flow",
)
SIMILARITY_FEATURES: tuple[str, ...] = (
    "similarity_top_products",
    "similarity_top_regions",
    "similarity_top_overall",
    "similarity_gap",
)
FEATURE_NAMES: tuple[str, ...] = ATTRIBUTE_FEATURES + SIMILARITY_FEATURES


def product_group(product: str) -> str:
    return f"{PRODUCT_GROUP_PREFIX}{product}"


def region_group(region: str) -> str:
    return f"{REGION_GROUP_PREFIX}{region}"


def deal_flow_matrix(white_space: pd.DataFrame) -> np.ndarray:
    """(P, R) deals per 30 days per (schema.PRODUCTS, schema.REGIONS) cell from a white-space table; 0 elsewhere."""
    flow = np.zeros((len(schema.PRODUCTS), len(schema.REGIONS)))
    if len(white_space):
        rows = pd.Index(schema.PRODUCTS).get_indexer(white_space[PRODUCT])
        columns = pd.Index(schema.REGIONS).get_indexer(white_space[CELL_REGION])
        known = (rows >= 0) & (columns >= 0)
        flow[rows[known], columns[known]] = white_space["deals_per_month"].to_numpy()[known]
    return flow


def attribute_features(
    prospects: Sequence[Prospect], deal_flow: np.ndarray, tenure_at_start_days: np.ndarray | None = None
) -> np.ndarray:
    """(n, len(ATTRIBUTE_FEATURES)) float32 in ATTRIBUTE_FEATURES order.

    `deal_flow` (P, R) is deals per 30 days per product x region cell: `certified_deal_flow` is the
    share of its regions' deal flow in products it is certified for, weighted by level / 3, and
    `sold_deal_flow` the share in products it sells, both in [0, 1]. Tenure (days a partner had been
    signed when its measured year began) is 0 for prospects, the default.
    """
    tenure = np.zeros(len(prospects)) if tenure_at_start_days is None else np.asarray(tenure_at_start_days, float)
    product_index = {product: row for row, product in enumerate(schema.PRODUCTS)}
    region_index = {region: column for column, region in enumerate(schema.REGIONS)}
    rows = []
    for prospect, days in zip(prospects, tenure.tolist(), strict=True):
        levels = list(prospect.certifications.values())
        regional = deal_flow[:, [region_index[region] for region in prospect.regions]].sum(axis=1)
        total = max(float(regional.sum()), 1e-9)
        certified = sum(regional[product_index[p]] * level for p, level in prospect.certifications.items())
        sold = sum(regional[product_index[p]] for p in set(prospect.products) | set(prospect.certifications))
        rows.append(
            (
                len(levels),
                float(np.mean(levels)) if levels else 0.0,
                max(levels, default=0),
                len(prospect.products),
                len(prospect.regions),
                float(np.log(prospect.capacity)),
                days,
                certified / (schema.MAX_CERT_LEVEL * total),
                sold / total,
            )
        )
    return np.asarray(rows, dtype=np.float32).reshape(len(prospects), len(ATTRIBUTE_FEATURES))


@dataclass(frozen=True)
class ReferenceSet:
    """Current partners whose realised performance is known: the evidence a prospect is compared to.

    partner_ids: (m,) str; vectors: (m, d) float32 unit profile embeddings; win_rates: (m,) realised
    (smoothed) first-year win rates; groups: group name -> (k,) int positions of its members: the
    top and bottom performers overall (TOP_GROUP, BOTTOM_GROUP) and the top performers per product
    (`product_group(p)`) and per region (`region_group(r)`).
    """

    partner_ids: np.ndarray
    vectors: np.ndarray
    win_rates: np.ndarray
    groups: Mapping[str, np.ndarray]
    _indexes: dict[str, PartnerIndex] = field(default_factory=dict, compare=False, repr=False)

    def index(self, group: str) -> PartnerIndex | None:
        """Exact FAISS index over the group's members (built on first use); None for an empty group."""
        positions = self.groups.get(group)
        if positions is None or len(positions) == 0:
            return None
        if group not in self._indexes:
            self._indexes[group] = PartnerIndex.build(self.partner_ids[positions], self.vectors[positions], kind="flat")
        return self._indexes[group]

    def nearest(
        self, group: str, vectors: np.ndarray, k: int, exclude_ids: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest group members of each query: reference positions (q, k) int64 (-1: none) and
        cosine similarities (q, k) float32 (NaN: none). A query's own id in `exclude_ids` is skipped,
        so current partners are compared with the others only (as a prospect would be)."""
        positions = np.full((len(vectors), k), -1, dtype=np.int64)
        similarities = np.full((len(vectors), k), np.nan, dtype=np.float32)
        index = self.index(group)
        if index is None or len(vectors) == 0:
            return positions, similarities
        found, cosine = index.search(vectors, min(k + 1, len(index)))
        valid = found >= 0
        if exclude_ids is not None:
            valid &= index.partner_ids[np.maximum(found, 0)] != np.asarray(exclude_ids, dtype=str)[:, None]
        # Valid hits first, in their search order; then keep k of them per row.
        order = np.argsort(~valid, axis=1, kind="stable")[:, :k]
        kept = np.take_along_axis(valid, order, axis=1)
        members = self.groups[group][np.maximum(np.take_along_axis(found, order, axis=1), 0)]
        width = order.shape[1]
        positions[:, :width] = np.where(kept, members, -1)
        similarities[:, :width] = np.where(kept, np.take_along_axis(cosine, order, axis=1), np.nan)
        return positions, similarities

    def mean_similarities(self, vectors: np.ndarray, exclude_ids: Sequence[str] | None) -> dict[str, np.ndarray]:
        """Every group -> (q,) mean cosine of each query to its NEIGHBOURS nearest group members, NaN
        for an empty group; a query's own id in `exclude_ids` is left out, as in `nearest`.

        Exact search for all groups at once: one (q, m) cosine product against every reference
        partner, then a partial sort within each group's columns, SIMILARITY_CHUNK queries at a
        time (what `nearest` finds, without a FAISS call per group)."""
        queries = np.asarray(vectors, dtype=np.float32)
        reference = np.asarray(self.vectors, dtype=np.float32)
        own = (
            np.full(len(queries), -1)
            if exclude_ids is None
            else pd.Index(self.partner_ids).get_indexer(np.asarray(exclude_ids, dtype=str))
        )
        means = {group: np.full(len(queries), np.nan, dtype=np.float32) for group in self.groups}
        for start in range(0, len(queries), SIMILARITY_CHUNK):
            rows = slice(start, start + SIMILARITY_CHUNK)
            cosine = queries[rows] @ reference.T  # (chunk, m)
            excluded = np.flatnonzero(own[rows] >= 0)
            cosine[excluded, own[rows][excluded]] = -np.inf
            for group, members in self.groups.items():
                if len(members) == 0:
                    continue
                kept = min(NEIGHBOURS, len(members))
                nearest = np.partition(cosine[:, members], len(members) - kept, axis=1)[:, -kept:]
                found = np.isfinite(nearest)
                counts = found.sum(axis=1)
                totals = np.where(found, nearest, 0.0).sum(axis=1)
                means[group][rows] = np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)
        return means


def similarity_features(
    prospects: Sequence[Prospect], vectors: np.ndarray, reference: ReferenceSet, exclude_ids: Sequence[str] | None
) -> np.ndarray:
    """(n, len(SIMILARITY_FEATURES)) float32: the prospect's mean similarity to the top performers
    of its products and of its regions (averaged over them; NaN when it has none with top
    performers), to the top performers overall, and that minus its similarity to the bottom ones."""
    similarity = reference.mean_similarities(vectors, exclude_ids)
    missing = np.full(len(prospects), np.nan, dtype=np.float32)
    top = similarity.get(TOP_GROUP, missing)
    bottom = similarity.get(BOTTOM_GROUP, missing)

    def averaged(row: int, names: list[str]) -> float:
        values = [similarity[name][row] for name in names if name in similarity and not np.isnan(similarity[name][row])]
        return float(np.mean(values)) if values else float("nan")

    rows = [
        (
            averaged(row, [product_group(p) for p in prospect.products]),
            averaged(row, [region_group(r) for r in prospect.regions]),
            top[row],
            top[row] - bottom[row],
        )
        for row, prospect in enumerate(prospects)
    ]
    return np.asarray(rows, dtype=np.float32).reshape(len(prospects), len(SIMILARITY_FEATURES))


def prospect_features(
    prospects: Sequence[Prospect],
    vectors: np.ndarray,
    reference: ReferenceSet,
    deal_flow: np.ndarray,
    tenure_at_start_days: np.ndarray | None = None,
    exclude_ids: Sequence[str] | None = None,
) -> np.ndarray:
    """(n, len(FEATURE_NAMES)) float32 in FEATURE_NAMES order; `vectors` (n, d) are the profile
    embeddings, `deal_flow` (P, R) as in `attribute_features`. Training passes current partners'
    tenure and their ids to leave each one out of its own reference groups; prospects take the defaults."""
    if len(vectors) != len(prospects):
        raise ValueError(f"{len(vectors)} vectors for {len(prospects)} prospects")
    return np.hstack(
        [
            attribute_features(prospects, deal_flow, tenure_at_start_days),
            similarity_features(prospects, vectors, reference, exclude_ids),
        ]
    )


@dataclass(frozen=True)
class FirstWinBands:
    """Median days from signing to a first win per band of expected win rate (Kaplan-Meier).

    edges: (b - 1,) ascending expected-win-rate cut points; median_days: (b,) days, NaN where fewer
    than half of the band had won by the end of observation (`observed_days` then bounds it below).
    """

    edges: tuple[float, ...]
    median_days: tuple[float, ...]
    observed_days: float

    def lookup(self, expected_win_rates: np.ndarray) -> np.ndarray:
        """(n,) median days to a first win for each expected win rate; NaN when beyond observation."""
        bands = np.searchsorted(np.asarray(self.edges), expected_win_rates, side="right")
        return np.asarray(self.median_days, dtype=float)[bands]


@dataclass(frozen=True)
class Reason:
    feature: str
    contribution: float  # win-rate points (percent) this attribute adds (> 0) or removes (< 0)
    text: str


@dataclass(frozen=True)
class Evidence:
    partner_id: str
    similarity: float  # cosine of the profile embeddings, in [-1, 1]
    win_rate: float  # the partner's realised (smoothed) first-year win rate, in (0, 1)


@dataclass(frozen=True)
class WhiteSpaceCell:
    product: str
    region: str
    excess_unmet_per_month: float  # unmet deals per 30 days beyond the well-served benchmark
    deals_per_month: float
    recruit_capacity: int  # deals per 30 days the partner to recruit should take on
    recruit_certification_level: int  # on the cell's product, 1..3: the median of the cell's winners
    serving_partners: int  # current partners operating in the region and selling the product
    typical_amount: float  # median deal in the cell, USD
    typical_segment: str


@dataclass(frozen=True)
class ProspectScore:
    prospect_id: str
    fit_score: float  # expected first-year win rate, percent in [0, 100]
    percentile: float  # percent of current partners with a lower fit score, in [0, 100]
    expected_days_to_first_win: float | None  # None: more than `first_win_observed_days`
    first_win_observed_days: float
    nearest_top_performers: list[Evidence]
    raises: list[Reason]
    lowers: list[Reason]
    white_space: list[WhiteSpaceCell]


@dataclass(frozen=True)
class IppModel:
    """A fitted IPP model with everything it needs to score prospects embedded by `encoder`."""

    booster: lgb.Booster
    reference: ReferenceSet
    encoder: str  # `features.embed.make_encoder` name of the encoder that embedded the profiles
    partner_scores: np.ndarray  # (p,) sorted expected win rates of the current partners
    first_win: FirstWinBands
    white_space: pd.DataFrame  # `features.performance.white_space` at training time, best first
    feature_names: tuple[str, ...] = FEATURE_NAMES

    @cached_property
    def deal_flow(self) -> np.ndarray:
        """(P, R) deals per 30 days per product x region cell, from the white-space table."""
        return deal_flow_matrix(self.white_space)

    @cached_property
    def white_space_cells(self) -> list[WhiteSpaceCell]:
        """The white-space cells with unmet demand, best first."""
        table = self.white_space
        if table.empty:
            return []
        table = table[table["excess_unmet_per_month"] > 0]
        return [
            WhiteSpaceCell(
                product=str(product),
                region=str(region),
                excess_unmet_per_month=float(excess),
                deals_per_month=float(deals),
                recruit_capacity=int(capacity),
                recruit_certification_level=int(level),
                serving_partners=int(serving),
                typical_amount=float(amount),
                typical_segment=str(segment),
            )
            for product, region, excess, deals, capacity, level, serving, amount, segment in zip(
                table[PRODUCT],
                table[CELL_REGION],
                table["excess_unmet_per_month"],
                table["deals_per_month"],
                table["recruit_capacity"],
                table["recruit_certification_level"],
                table["serving_partners"],
                table["typical_amount"],
                table["typical_segment"],
                strict=True,
            )
        ]

    def features(self, prospects: Sequence[Prospect], vectors: np.ndarray) -> np.ndarray:
        """(n, F) float32 in `feature_names` order for prospects (tenure 0) embedded as `vectors`."""
        return prospect_features(prospects, vectors, self.reference, self.deal_flow)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(n,) expected first-year win rate in [0, 1]."""
        # One thread: OpenMP start-up costs more than it saves on a few rows.
        return np.clip(np.asarray(self.booster.predict(features, num_threads=PREDICT_THREADS)), 0.0, 1.0)

    def percentile(self, expected_win_rates: np.ndarray) -> np.ndarray:
        """(n,) percent of current partners with a lower expected win rate, in [0, 100]."""
        if self.partner_scores.size == 0:
            return np.full(len(expected_win_rates), np.nan)
        below = np.searchsorted(self.partner_scores, expected_win_rates, side="left")
        return 100.0 * below / self.partner_scores.size

    def explained(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`predict` and the (n, F) TreeSHAP contributions in win-rate units, from one pass over the trees:
        the regression's prediction is its bias plus the contributions (then clipped like `predict`)."""
        with_bias = np.asarray(self.booster.predict(features, pred_contrib=True, num_threads=PREDICT_THREADS))
        return np.clip(with_bias.sum(axis=1), 0.0, 1.0), with_bias[:, :-1]

    def white_space_for(self, prospect: Prospect) -> list[WhiteSpaceCell]:
        """The white-space cells the prospect would fill (its products x regions with unmet demand), best first."""
        return [
            cell
            for cell in self.white_space_cells
            if cell.product in prospect.products and cell.region in prospect.regions
        ]

    def score(
        self, prospects: Sequence[Prospect], vectors: np.ndarray, evidence: int = 3, reasons: int = 3
    ) -> list[ProspectScore]:
        """Score prospects (embedded as `vectors`, (n, d) unit rows): one ProspectScore each."""
        expected, contributions = self.explained(self.features(prospects, vectors))
        percentiles = self.percentile(expected)
        days = self.first_win.lookup(expected)
        neighbours, similarities = self.reference.nearest(TOP_GROUP, vectors, evidence)
        scores = []
        for row, prospect in enumerate(prospects):
            order = np.argsort(-contributions[row])
            scores.append(
                ProspectScore(
                    prospect_id=prospect.prospect_id,
                    fit_score=float(100.0 * expected[row]),
                    percentile=float(percentiles[row]),
                    expected_days_to_first_win=None if np.isnan(days[row]) else float(days[row]),
                    first_win_observed_days=self.first_win.observed_days,
                    nearest_top_performers=[
                        Evidence(
                            partner_id=str(self.reference.partner_ids[position]),
                            similarity=float(similarity),
                            win_rate=float(self.reference.win_rates[position]),
                        )
                        for position, similarity in zip(neighbours[row], similarities[row], strict=True)
                        if position >= 0
                    ],
                    raises=self._reasons(contributions[row], order[:reasons], positive=True),
                    lowers=self._reasons(contributions[row], order[::-1][:reasons], positive=False),
                    white_space=self.white_space_for(prospect),
                )
            )
        return scores

    def _reasons(self, contributions: np.ndarray, order: np.ndarray, positive: bool) -> list[Reason]:
        return [
            Reason(
                feature=self.feature_names[index],
                contribution=float(100.0 * contributions[index]),
                text=FEATURE_REASONS[self.feature_names[index]][0 if positive else 1],
            )
            for index in order
            if (contributions[index] > 0) == positive and contributions[index] != 0
        ]

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / BOOSTER_FILE).write_text(self.booster.model_to_string())
        np.save(directory / REFERENCE_IDS_FILE, self.reference.partner_ids.astype(str))
        np.save(directory / REFERENCE_VECTORS_FILE, self.reference.vectors.astype(np.float32))
        np.save(directory / REFERENCE_WIN_RATES_FILE, self.reference.win_rates.astype(np.float64))
        np.save(directory / PARTNER_SCORES_FILE, self.partner_scores.astype(np.float64))
        manifest = {
            "format_version": FORMAT_VERSION,
            "encoder": self.encoder,
            "feature_names": list(self.feature_names),
            "groups": {name: positions.tolist() for name, positions in self.reference.groups.items()},
            "first_win": {
                "edges": list(self.first_win.edges),
                "median_days": [None if np.isnan(days) else days for days in self.first_win.median_days],
                "observed_days": self.first_win.observed_days,
            },
            "white_space": self.white_space.to_dict(orient="list"),
        }
        # Written last: its presence marks a complete model directory.
        (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
        return directory

    @classmethod
    def load(cls, directory: Path) -> IppModel:
        """Read what `save` wrote; ValueError naming the directory when it is not an IPP model."""
        directory = Path(directory)
        manifest_path = directory / MANIFEST_FILE
        if not manifest_path.is_file():
            raise ValueError(f"{directory} is not an IPP model: {MANIFEST_FILE} is missing")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{directory} holds IPP format {manifest.get('format_version')}; this code reads {FORMAT_VERSION}"
            )
        first_win = manifest["first_win"]
        return cls(
            booster=lgb.Booster(model_str=(directory / BOOSTER_FILE).read_text()),
            reference=ReferenceSet(
                partner_ids=np.load(directory / REFERENCE_IDS_FILE, allow_pickle=False),
                vectors=np.load(directory / REFERENCE_VECTORS_FILE, allow_pickle=False),
                win_rates=np.load(directory / REFERENCE_WIN_RATES_FILE, allow_pickle=False),
                groups={name: np.asarray(positions, dtype=np.int64) for name, positions in manifest["groups"].items()},
            ),
            encoder=manifest["encoder"],
            partner_scores=np.load(directory / PARTNER_SCORES_FILE, allow_pickle=False),
            first_win=FirstWinBands(
                edges=tuple(first_win["edges"]),
                median_days=tuple(np.nan if days is None else days for days in first_win["median_days"]),
                observed_days=float(first_win["observed_days"]),
            ),
            white_space=pd.DataFrame(manifest["white_space"]),
            feature_names=tuple(manifest["feature_names"]),
        )


def load_champion(paths: Paths) -> tuple[IppModel, RegisteredVersion]:
    """The `partnermatch-ipp@champion` model and its version. ValueError when none is registered;
    `models.registry.RegistryError` when the registry cannot be read."""
    version = version_by_alias(paths, REGISTERED_IPP_MODEL, CHAMPION)
    if version is None:
        raise ValueError(f"no {REGISTERED_IPP_MODEL} champion is registered: run `partnermatch train-ipp` first")
    return IppModel.load(local_bundle(paths, version)), version


def score_in_batches(
    model: IppModel, prospects: Sequence[Prospect], encoder: Encoder, progress: Progress = SILENT
) -> list[ProspectScore]:
    """Embed and score prospects SCORE_BATCH at a time, reporting `progress.count` after each batch."""
    if encoder.dimension != model.reference.vectors.shape[1]:
        raise ValueError(
            f"the model was trained on {model.encoder} embeddings ({model.reference.vectors.shape[1]}-d), "
            f"not {encoder.name} ({encoder.dimension}-d)"
        )
    scores: list[ProspectScore] = []
    for start in range(0, len(prospects), SCORE_BATCH):
        batch = list(prospects[start : start + SCORE_BATCH])
        scores.extend(model.score(batch, encoder.encode([prospect.profile_text for prospect in batch])))
        progress.count(len(scores), len(prospects))
    return scores


def scores_frame(scores: Sequence[ProspectScore]) -> pd.DataFrame:
    """One row per prospect for a CSV: the numbers, and `|`-joined evidence, reasons and white-space cells."""
    return pd.DataFrame(
        {
            "prospect_id": [score.prospect_id for score in scores],
            "fit_score": [score.fit_score for score in scores],
            "percentile": [score.percentile for score in scores],
            "expected_days_to_first_win": [score.expected_days_to_first_win for score in scores],
            "nearest_top_performers": [
                schema.join_list([item.partner_id for item in score.nearest_top_performers]) for score in scores
            ],
            "raises": [schema.join_list([reason.text for reason in score.raises]) for score in scores],
            "lowers": [schema.join_list([reason.text for reason in score.lowers]) for score in scores],
            "white_space": [
                schema.join_list([f"{cell.product}@{cell.region}" for cell in score.white_space]) for score in scores
            ],
        }
    )


def scores_records(scores: Sequence[ProspectScore]) -> list[dict[str, object]]:
    """The scores as JSON-ready dicts (nested evidence, reasons and cells)."""
    return [asdict(score) for score in scores]
