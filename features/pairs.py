"""Point-in-time (deal, partner) feature rows.

Every feature of a row is computed from what was known strictly before the deal's `created_at`:
an outcome counts once it has closed (`closed_at < created_at`), an attempt counts as load from the
moment its deal was created, an engagement event from when it occurred. Training rows (history)
and serving rows (a new deal "now") go through the same `pair_features`, so the two cannot drift.

The history is indexed once (`build_feature_context`) as sorted (key, time) arrays with running
sums; a "sum of events with this key before t" is then two binary searches, which keeps a million
rows to seconds and a single routing request to microseconds per candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from features import schema
from features.progress import SILENT, Progress

# Feature names, in model order. One place: the model, the explanations and the tests read these.
WIN_RATE_PRODUCTS = "win_rate_products"
ATTEMPTS_PRODUCTS = "attempts_products"
WIN_RATE_REGION = "win_rate_region"
WIN_RATE_OVERALL = "win_rate_overall"
ATTEMPTS_OVERALL = "attempts_overall"
LOAD_RATIO = "load_ratio"
CERT_COVERAGE = "cert_coverage"
CERT_LEVEL = "cert_level"
REGION_MATCH = "region_match"
HOME_REGION_MATCH = "home_region_match"
EMBEDDING_SIMILARITY = "embedding_similarity"
TENURE_DAYS = "tenure_days"
DEAL_SIZE_FIT = "deal_size_fit"
ENGAGEMENT_30D = "engagement_30d"
ENGAGEMENT_TREND = "engagement_trend"
TIER_LEVEL = "tier_level"
DEAL_PRODUCT_COUNT = "deal_product_count"
LOG_AMOUNT = "log_amount"

FEATURE_COLUMNS: tuple[str, ...] = (
    WIN_RATE_PRODUCTS,
    ATTEMPTS_PRODUCTS,
    WIN_RATE_REGION,
    WIN_RATE_OVERALL,
    ATTEMPTS_OVERALL,
    LOAD_RATIO,
    CERT_COVERAGE,
    CERT_LEVEL,
    REGION_MATCH,
    HOME_REGION_MATCH,
    EMBEDDING_SIMILARITY,
    TENURE_DAYS,
    DEAL_SIZE_FIT,
    ENGAGEMENT_30D,
    ENGAGEMENT_TREND,
    TIER_LEVEL,
    DEAL_PRODUCT_COUNT,
    LOG_AMOUNT,
)

# Domain knowledge the win model must obey (LightGBM monotone constraints): +1 = raising the feature,
# all else equal, never lowers the win probability; -1 = never raises it. Unlisted features are free.
MONOTONE_DIRECTIONS: dict[str, int] = {
    # Vendors certify proven skill on a product; more certified products or higher levels never hurt.
    CERT_COVERAGE: 1,
    CERT_LEVEL: 1,
    # Win rates are shrunk toward the market rate, so a higher one is more evidence of closing, never less.
    WIN_RATE_PRODUCTS: 1,
    WIN_RATE_REGION: 1,
    WIN_RATE_OVERALL: 1,
    # Recent deals per unit of declared capacity: a busier partner has less time per deal, never more.
    LOAD_RATIO: -1,
}

# Human wording of each feature for explanations: (raises the probability, lowers it).
FEATURE_REASONS: dict[str, tuple[str, str]] = {
    WIN_RATE_PRODUCTS: ("strong win record on these products", "weak win record on these products"),
    ATTEMPTS_PRODUCTS: ("much experience with these products", "little experience with these products"),
    WIN_RATE_REGION: ("strong win record in this region", "weak win record in this region"),
    WIN_RATE_OVERALL: ("strong overall win record", "weak overall win record"),
    ATTEMPTS_OVERALL: ("long deal history", "short deal history"),
    LOAD_RATIO: ("has spare capacity", "is near or over capacity"),
    CERT_COVERAGE: ("certified on the deal's products", "missing certifications for the deal's products"),
    CERT_LEVEL: ("high certification levels", "low certification levels"),
    REGION_MATCH: ("operates in the deal's region", "does not operate in the deal's region"),
    HOME_REGION_MATCH: ("based in the deal's region", "based outside the deal's region"),
    EMBEDDING_SIMILARITY: ("profile closely matches the requirements", "profile matches the requirements poorly"),
    TENURE_DAYS: ("established partner", "new partner with little track record"),
    DEAL_SIZE_FIT: ("deal size fits past wins", "deal size unlike past wins"),
    ENGAGEMENT_30D: ("actively engaged recently", "little recent engagement"),
    ENGAGEMENT_TREND: ("engagement is rising", "engagement is falling"),
    TIER_LEVEL: ("high partner tier", "low partner tier"),
    DEAL_PRODUCT_COUNT: ("deal scope suits the partner", "deal scope is hard for the partner"),
    LOG_AMOUNT: ("deal size favours the partner", "deal size works against the partner"),
}

PRIOR_STRENGTH = 5.0  # pseudo-attempts pulling a partner's win rate to the market rate
ENGAGEMENT_RECENT = pd.Timedelta(days=30)  # ENGAGEMENT_30D counts the events of this window
ENGAGEMENT_BASELINE = pd.Timedelta(days=90)  # ENGAGEMENT_TREND compares with this window's monthly mean
SECONDS_PER_DAY = 86_400
_TIME_BITS = 34  # seconds since 1970 fit in 34 bits until the year 2514
_SECONDS = np.int64(1_000_000_000)


class FeatureError(ValueError):
    """A deal or partner that the feature context cannot describe (unknown product, region, partner)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def to_seconds(times: pd.Series | pd.DatetimeIndex | npt.ArrayLike) -> np.ndarray:
    """Datetimes -> int64 seconds since 1970 (naive times are taken as UTC)."""
    values = pd.to_datetime(pd.Series(np.asarray(times).ravel())).astype("datetime64[ns]")
    return values.to_numpy().astype(np.int64) // _SECONDS


def event_keys(keys: np.ndarray, seconds: np.ndarray | int) -> np.ndarray:
    """(e,) int keys >= 0 and seconds in [0, 2**34) -> (e,) int64 `key << 34 | seconds`: sorting these
    sorts by key, then time, and one binary search finds a (key, time) among them."""
    return (np.asarray(keys).astype(np.int64) << _TIME_BITS) | np.asarray(seconds).astype(np.int64)


@dataclass(frozen=True)
class EventIndex:
    """Events sorted by (key, time) with running sums of their value columns.

    `sum_before(keys, times)` returns, per query, the column sums of events with the same key and
    time strictly before the query time: (q, columns) float64.
    """

    composite: np.ndarray  # (e,) int64 event_keys, sorted
    running: np.ndarray  # (e + 1, columns) float64, running[i] = sum of the first i events

    @classmethod
    def build(cls, keys: np.ndarray, seconds: np.ndarray, values: np.ndarray) -> EventIndex:
        composite = event_keys(keys, seconds)
        order = np.argsort(composite, kind="stable")
        values_2d = (values[:, None] if values.ndim == 1 else values).astype(np.float64)[order]
        running = np.vstack([np.zeros((1, values_2d.shape[1])), np.cumsum(values_2d, axis=0)])
        return cls(composite=composite[order], running=running)

    def sum_before(self, keys: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        key_start = np.searchsorted(self.composite, event_keys(keys, 0), side="left")
        before = np.searchsorted(self.composite, event_keys(keys, seconds), side="left")
        result: np.ndarray = self.running[before] - self.running[key_start]
        return result


class EventSums(Protocol):
    def sum_before(self, keys: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """(q,) keys and query times -> (q, columns) sums of the events with that key strictly before."""
        ...


@dataclass(frozen=True)
class FrozenSums:
    """An EventIndex's sums at a few fixed query times, precomputed for every key 0..n-1: a request
    routed "as of now" looks its partners up instead of running two binary searches per feature.
    Queries at any other time, or mixing times, go to the index, so results never differ."""

    index: EventIndex
    tables: dict[int, np.ndarray]  # query seconds -> (n_keys, columns) sums

    @classmethod
    def build(cls, index: EventIndex, n_keys: int, seconds: Sequence[int]) -> FrozenSums:
        keys = np.arange(n_keys, dtype=np.int64)
        return cls(index, {int(at): index.sum_before(keys, np.full(n_keys, at, dtype=np.int64)) for at in seconds})

    def sum_before(self, keys: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        if len(seconds):
            table = self.tables.get(int(seconds[0]))
            if table is not None and np.all(seconds == seconds[0]):
                return table[np.asarray(keys, dtype=np.int64)]
        return self.index.sum_before(keys, seconds)


@dataclass(frozen=True)
class FeatureContext:
    """Everything `pair_features` needs about partners and history, indexed for fast lookups.

    Shapes: n partners, P products, R regions, d embedding dimensions.
    """

    products: tuple[str, ...]
    regions: tuple[str, ...]
    partner_ids: np.ndarray  # (n,) str
    partner_position: dict[str, int]
    partner_regions: np.ndarray  # (n, R) bool
    partner_home_region: np.ndarray  # (n,) int
    partner_certifications: np.ndarray  # (n, P) int8 levels 0..3
    partner_capacity: np.ndarray  # (n,) float64, deals per schema.LOAD_WINDOW, >= 1
    partner_joined_seconds: np.ndarray  # (n,) int64
    partner_tier: np.ndarray  # (n,) int
    partner_vectors: np.ndarray  # (n, d) float32, L2-normalised profile embeddings
    outcomes_by_product: EventSums  # key partner*P + product; values attempts, wins
    outcomes_by_region: EventSums  # key partner*R + region; values attempts, wins
    outcomes_by_partner: EventSums  # key partner; values attempts, wins, wins*log(amount)
    outcomes_all: EventSums  # key 0; values attempts, wins (the market rate)
    attempts_by_partner: EventSums  # key partner, time = deal created_at; value 1
    engagement_by_partner: EventSums  # key partner; value 1
    history_end: pd.Timestamp  # latest event time in the history


@dataclass(frozen=True)
class DealBatch:
    """Deals described in the context's vocabularies. m deals."""

    region_index: np.ndarray  # (m,) int
    product_mask: np.ndarray  # (m, P) bool, at least one product per deal
    amount: np.ndarray  # (m,) float64 USD > 0
    created_seconds: np.ndarray  # (m,) int64
    vectors: np.ndarray  # (m, d) float32 requirement embeddings


def vocabularies(partners: pd.DataFrame, deals: pd.DataFrame) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Products and regions seen in the data, sorted (real data sets bring their own vocabularies)."""
    products: set[str] = set()
    for cell in deals[schema.DEAL_PRODUCTS]:
        products.update(schema.split_list(cell))
    for cell in partners[schema.CERTIFICATIONS]:
        products.update(schema.parse_certifications(cell))
    regions = set(deals[schema.DEAL_REGION].astype(str)) | set(partners[schema.HOME_REGION].astype(str))
    for cell in partners[schema.PARTNER_REGIONS]:
        regions.update(schema.split_list(cell))
    return tuple(sorted(products)), tuple(sorted(regions))


def positions(values: Sequence[str] | pd.Series | np.ndarray, vocabulary: pd.Index, field: str) -> np.ndarray:
    """(m,) int64 position of each value in `vocabulary` (unique); FeatureError(field) names up to
    five unknown values."""
    found = vocabulary.get_indexer(np.asarray(values, dtype=object)).astype(np.int64)
    if (found < 0).any():
        unknown = sorted(set(np.asarray(values, dtype=object)[found < 0].astype(str)))[:5]
        raise FeatureError(field, f"unknown value(s) {unknown}")
    return found


def product_mask(product_cells: Sequence[str] | pd.Series, products: tuple[str, ...]) -> np.ndarray:
    """`|`-joined product cells -> (m, P) bool. Unknown products raise FeatureError('products')."""
    lookup = {product: index for index, product in enumerate(products)}
    codes, cells = pd.factorize(np.asarray(product_cells, dtype=object), use_na_sentinel=False)
    # Rows repeat a few product combinations: parse each distinct cell once.
    distinct = np.zeros((len(cells), len(products)), dtype=bool)
    for code, cell in enumerate(cells):
        names = schema.split_list(cell)
        if not names:
            raise FeatureError(schema.DEAL_PRODUCTS, f"deal row {np.flatnonzero(codes == code)[0]} lists no products")
        unknown = [name for name in names if name not in lookup]
        if unknown:
            raise FeatureError(schema.DEAL_PRODUCTS, f"unknown product(s) {unknown}; known: {list(products)}")
        distinct[code, [lookup[name] for name in names]] = True
    mask: np.ndarray = distinct[codes]
    return mask


def deal_batch(
    deals: pd.DataFrame, deal_vectors: np.ndarray, products: tuple[str, ...], regions: tuple[str, ...]
) -> DealBatch:
    """Deals frame (schema.DEALS columns) + (m, d) requirement embeddings -> DealBatch."""
    amount = deals[schema.AMOUNT].to_numpy(dtype=np.float64)
    if np.any(~np.isfinite(amount)) or np.any(amount <= 0):
        raise FeatureError(schema.AMOUNT, "must be a positive number of USD")
    return DealBatch(
        region_index=positions(deals[schema.DEAL_REGION], pd.Index(regions), schema.DEAL_REGION),
        product_mask=product_mask(deals[schema.DEAL_PRODUCTS], products),
        amount=amount,
        created_seconds=to_seconds(deals[schema.CREATED_AT]),
        vectors=np.asarray(deal_vectors, dtype=np.float32),
    )


def build_feature_context(
    partners: pd.DataFrame,
    deals: pd.DataFrame,
    outcomes: pd.DataFrame,
    engagement: pd.DataFrame,
    partner_vectors: np.ndarray,
    vocabulary: tuple[tuple[str, ...], tuple[str, ...]] | None = None,
) -> FeatureContext:
    """Index partners and history. `partner_vectors` is (n, d), aligned with `partners` rows.

    `deals` must hold every deal that `outcomes` refers to (their products, region and amount).
    """
    products, regions = vocabulary or vocabularies(partners, deals)
    product_lookup = {product: index for index, product in enumerate(products)}
    region_lookup = {region: index for index, region in enumerate(regions)}
    n_partners, n_products, n_regions = len(partners), len(products), len(regions)
    partner_ids = partners[schema.PARTNER_ID].astype(str).to_numpy()
    partner_position = {partner_id: index for index, partner_id in enumerate(partner_ids)}
    partner_vocabulary, region_vocabulary = pd.Index(partner_ids), pd.Index(regions)

    partner_regions = np.zeros((n_partners, n_regions), dtype=bool)
    certifications = np.zeros((n_partners, n_products), dtype=np.int8)
    for row, (regions_cell, certs_cell) in enumerate(
        zip(partners[schema.PARTNER_REGIONS], partners[schema.CERTIFICATIONS], strict=True)
    ):
        partner_regions[row, [region_lookup[r] for r in schema.split_list(regions_cell) if r in region_lookup]] = True
        for product, level in schema.parse_certifications(certs_cell).items():
            if product in product_lookup:
                certifications[row, product_lookup[product]] = level
    tier_lookup = {tier: level for level, tier in enumerate(schema.TIERS)}

    sums = history_sums(deals, outcomes, engagement, products, regions, partner_vocabulary)
    return FeatureContext(
        products=products,
        regions=regions,
        partner_ids=partner_ids,
        partner_position=partner_position,
        partner_regions=partner_regions,
        partner_home_region=positions(partners[schema.HOME_REGION].astype(str), region_vocabulary, schema.HOME_REGION),
        partner_certifications=certifications,
        partner_capacity=np.maximum(partners[schema.CAPACITY].to_numpy(dtype=np.float64), 1.0),
        partner_joined_seconds=to_seconds(partners[schema.JOINED_AT]),
        partner_tier=partners[schema.TIER].map(tier_lookup).fillna(0).to_numpy(dtype=np.int64),
        partner_vectors=np.asarray(partner_vectors, dtype=np.float32),
        outcomes_by_product=sums.outcomes_by_product,
        outcomes_by_region=sums.outcomes_by_region,
        outcomes_by_partner=sums.outcomes_by_partner,
        outcomes_all=sums.outcomes_all,
        attempts_by_partner=sums.attempts_by_partner,
        engagement_by_partner=sums.engagement_by_partner,
        history_end=sums.history_end,
    )


@dataclass(frozen=True)
class HistorySums:
    """The six history indexes of a FeatureContext (same field names) and the latest event time."""

    outcomes_by_product: EventIndex
    outcomes_by_region: EventIndex
    outcomes_by_partner: EventIndex
    outcomes_all: EventIndex
    attempts_by_partner: EventIndex
    engagement_by_partner: EventIndex
    history_end: pd.Timestamp  # the epoch when there are no events


def history_sums(
    deals: pd.DataFrame,
    outcomes: pd.DataFrame,
    engagement: pd.DataFrame,
    products: tuple[str, ...],
    regions: tuple[str, ...],
    partner_vocabulary: pd.Index,
) -> HistorySums:
    """The history indexes of these tables. `deals` holds every deal that
    `outcomes` refers to; partners are positions in `partner_vocabulary` (unknown ones raise
    FeatureError)."""
    n_products, n_regions = len(products), len(regions)
    # Outcome events: one per (deal, partner) attempt, known from closed_at on.
    deal_rows = deals.set_index(schema.DEAL_ID)
    outcome_deals = deal_rows.loc[outcomes[schema.DEAL_ID].astype(str)]
    outcome_partner = positions(outcomes[schema.PARTNER_ID].astype(str), partner_vocabulary, schema.PARTNER_ID)
    closed_seconds = to_seconds(outcomes[schema.CLOSED_AT])
    won = outcomes[schema.WON].to_numpy(dtype=np.float64)
    ones = np.ones_like(won)
    outcome_products = product_mask(outcome_deals[schema.DEAL_PRODUCTS].tolist(), products)
    product_row, product_col = np.nonzero(outcome_products)
    outcome_region = positions(outcome_deals[schema.DEAL_REGION].astype(str), pd.Index(regions), schema.DEAL_REGION)
    log_amount = np.log(outcome_deals[schema.AMOUNT].to_numpy(dtype=np.float64))
    attempt_seconds = to_seconds(outcome_deals[schema.CREATED_AT])
    engagement_partner = positions(engagement[schema.PARTNER_ID].astype(str), partner_vocabulary, schema.PARTNER_ID)
    engagement_seconds = to_seconds(engagement[schema.OCCURRED_AT])

    event_times = [closed_seconds, attempt_seconds, engagement_seconds]
    history_end = pd.Timestamp(max((int(t.max()) for t in event_times if t.size), default=0), unit="s")
    return HistorySums(
        outcomes_by_product=EventIndex.build(
            outcome_partner[product_row] * n_products + product_col,
            closed_seconds[product_row],
            np.column_stack([ones[product_row], won[product_row]]),
        ),
        outcomes_by_region=EventIndex.build(
            outcome_partner * n_regions + outcome_region, closed_seconds, np.column_stack([ones, won])
        ),
        outcomes_by_partner=EventIndex.build(
            outcome_partner, closed_seconds, np.column_stack([ones, won, won * log_amount])
        ),
        outcomes_all=EventIndex.build(np.zeros_like(outcome_partner), closed_seconds, np.column_stack([ones, won])),
        attempts_by_partner=EventIndex.build(outcome_partner, attempt_seconds, ones),
        engagement_by_partner=EventIndex.build(engagement_partner, engagement_seconds, np.ones(len(engagement))),
        history_end=history_end,
    )


@dataclass(frozen=True)
class LayeredSums:
    """A base's sums plus those of later events (`delta`): what the history would index if the
    events had been in it, without rebuilding (or copying) the base. Sums add, so the result equals
    an index built over base and delta events together."""

    base: EventSums
    delta: EventIndex

    def sum_before(self, keys: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        result: np.ndarray = self.base.sum_before(keys, seconds) + self.delta.sum_before(keys, seconds)
        return result


def with_events(
    context: FeatureContext, deals: pd.DataFrame, outcomes: pd.DataFrame, engagement: pd.DataFrame
) -> FeatureContext:
    """`context` with more history: outcome attempts (their deals in `deals`) and engagement events,
    the tables in schema columns, as `build_feature_context` would index them on history + these
    tables. Partners must be the context's (FeatureError names an unknown one). The context's own
    sums (frozen or mapped) stay as they are; `with_events(with_events(c, a), b)` layers again, so
    callers holding a growing event list rebuild from `context` (cost: sorting the events)."""
    delta = history_sums(deals, outcomes, engagement, context.products, context.regions, pd.Index(context.partner_ids))
    has_events = len(outcomes) + len(engagement) > 0
    return replace(
        context,
        outcomes_by_product=LayeredSums(context.outcomes_by_product, delta.outcomes_by_product),
        outcomes_by_region=LayeredSums(context.outcomes_by_region, delta.outcomes_by_region),
        outcomes_by_partner=LayeredSums(context.outcomes_by_partner, delta.outcomes_by_partner),
        outcomes_all=LayeredSums(context.outcomes_all, delta.outcomes_all),
        attempts_by_partner=LayeredSums(context.attempts_by_partner, delta.attempts_by_partner),
        engagement_by_partner=LayeredSums(context.engagement_by_partner, delta.engagement_by_partner),
        history_end=max(context.history_end, delta.history_end) if has_events else context.history_end,
    )


def frozen_at(context: FeatureContext, seconds: int) -> FeatureContext:
    """The same context with every history sum that a deal created at `seconds` looks up precomputed
    for all partners (deals at other times still work, at the usual speed). Memory: about
    n x (P + R) x 16 bytes, 32 MB for 100k partners."""

    def frozen(sums: EventSums, n_keys: int, *offsets: int) -> EventSums:
        index = sums.index if isinstance(sums, FrozenSums) else sums
        if not isinstance(index, EventIndex):
            raise TypeError(f"cannot freeze {type(index).__name__}")
        return FrozenSums.build(index, n_keys, [seconds - offset for offset in offsets])

    n_partners = len(context.partner_ids)
    load_window = int(schema.LOAD_WINDOW.total_seconds())
    recent, baseline = int(ENGAGEMENT_RECENT.total_seconds()), int(ENGAGEMENT_BASELINE.total_seconds())
    return replace(
        context,
        outcomes_by_product=frozen(context.outcomes_by_product, n_partners * len(context.products), 0),
        outcomes_by_region=frozen(context.outcomes_by_region, n_partners * len(context.regions), 0),
        outcomes_by_partner=frozen(context.outcomes_by_partner, n_partners, 0),
        outcomes_all=frozen(context.outcomes_all, 1, 0),
        attempts_by_partner=frozen(context.attempts_by_partner, n_partners, 0, load_window),
        engagement_by_partner=frozen(context.engagement_by_partner, n_partners, 0, recent, baseline),
    )


def recent_attempts(attempts: EventSums, partner_rows: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """(q,) float64 load: events of `attempts` (key partner row, time its deal's creation) with the
    query's partner and time in [seconds - schema.LOAD_WINDOW, seconds)."""
    window = int(schema.LOAD_WINDOW.total_seconds())
    counts: np.ndarray = (
        attempts.sum_before(partner_rows, seconds) - attempts.sum_before(partner_rows, seconds - window)
    )[:, 0]
    return counts


def _smoothed_rate(wins: np.ndarray, attempts: np.ndarray, prior: np.ndarray) -> np.ndarray:
    return (wins + PRIOR_STRENGTH * prior) / (attempts + PRIOR_STRENGTH)


def pair_features(
    context: FeatureContext,
    deals: DealBatch,
    deal_rows: np.ndarray,
    partner_rows: np.ndarray,
    chunk_rows: int = 200_000,
    progress: Progress = SILENT,
) -> pd.DataFrame:
    """Feature frame (rows, FEATURE_COLUMNS) float32 for pairs (deal_rows[i], partner_rows[i]).

    `deal_rows` index `deals`, `partner_rows` index the context's partners. Each row sees only
    history strictly before its deal's `created_at`. Rows are built `chunk_rows` at a time, each
    chunk reported as `progress.count(rows done, rows)`.
    """
    matrix = pair_feature_matrix(context, deals, deal_rows, partner_rows, chunk_rows, progress)
    return pd.DataFrame(matrix, columns=list(FEATURE_COLUMNS), copy=False)


def pair_feature_matrix(
    context: FeatureContext,
    deals: DealBatch,
    deal_rows: np.ndarray,
    partner_rows: np.ndarray,
    chunk_rows: int = 200_000,
    progress: Progress = SILENT,
) -> np.ndarray:
    """`pair_features` as a (rows, F) float32 array, columns in FEATURE_COLUMNS order: the serving
    path, where building a DataFrame per request would cost as much as the features themselves."""
    deal_rows = np.asarray(deal_rows, dtype=np.int64)
    partner_rows = np.asarray(partner_rows, dtype=np.int64)
    matrix = np.empty((len(deal_rows), len(FEATURE_COLUMNS)), dtype=np.float32)
    for start in range(0, len(deal_rows), chunk_rows):
        stop = start + chunk_rows
        matrix[start:stop] = _pair_features_chunk(context, deals, deal_rows[start:stop], partner_rows[start:stop])
        progress.count(min(stop, len(deal_rows)), len(deal_rows))
    return matrix


def _pair_features_chunk(
    context: FeatureContext, deals: DealBatch, deal_rows: np.ndarray, partner_rows: np.ndarray
) -> np.ndarray:
    seconds = deals.created_seconds[deal_rows]
    n_products, n_regions = len(context.products), len(context.regions)
    mask = deals.product_mask[deal_rows]  # (rows, P)
    products_per_row = mask.sum(axis=1)

    market = context.outcomes_all.sum_before(np.zeros_like(partner_rows), seconds)
    market_rate = _smoothed_rate(market[:, 1], market[:, 0], np.full(len(seconds), 0.5))

    # Sum the partner's (attempts, wins) over the deal's products: one lookup per (row, product).
    row_of, product_of = np.nonzero(mask)
    per_product = context.outcomes_by_product.sum_before(
        partner_rows[row_of] * n_products + product_of, seconds[row_of]
    )
    product_attempts = np.bincount(row_of, weights=per_product[:, 0], minlength=len(seconds))
    product_wins = np.bincount(row_of, weights=per_product[:, 1], minlength=len(seconds))

    region_index = deals.region_index[deal_rows]
    region = context.outcomes_by_region.sum_before(partner_rows * n_regions + region_index, seconds)
    overall = context.outcomes_by_partner.sum_before(partner_rows, seconds)

    load = recent_attempts(context.attempts_by_partner, partner_rows, seconds)
    engaged_before = context.engagement_by_partner.sum_before(partner_rows, seconds)[:, 0]
    recent_seconds = int(ENGAGEMENT_RECENT.total_seconds())
    engaged_30d = (
        engaged_before - context.engagement_by_partner.sum_before(partner_rows, seconds - recent_seconds)[:, 0]
    )
    baseline_seconds = int(ENGAGEMENT_BASELINE.total_seconds())
    engaged_90d = (
        engaged_before - context.engagement_by_partner.sum_before(partner_rows, seconds - baseline_seconds)[:, 0]
    )
    earlier_monthly = (engaged_90d - engaged_30d) / 2.0

    certs = context.partner_certifications[partner_rows]  # (rows, P)
    certified = ((certs > 0) & mask).sum(axis=1)
    cert_levels = np.where(mask, certs, 0).sum(axis=1)

    with np.errstate(divide="ignore", invalid="ignore"):
        mean_log_won_amount = np.where(overall[:, 1] > 0, overall[:, 2] / overall[:, 1], np.nan)
    similarity = np.einsum(
        "ij,ij->i", context.partner_vectors[partner_rows], deals.vectors[deal_rows], dtype=np.float32
    )
    log_amount = np.log(deals.amount[deal_rows])

    columns = {
        WIN_RATE_PRODUCTS: _smoothed_rate(product_wins, product_attempts, market_rate),
        ATTEMPTS_PRODUCTS: np.log1p(product_attempts),
        WIN_RATE_REGION: _smoothed_rate(region[:, 1], region[:, 0], market_rate),
        WIN_RATE_OVERALL: _smoothed_rate(overall[:, 1], overall[:, 0], market_rate),
        ATTEMPTS_OVERALL: np.log1p(overall[:, 0]),
        LOAD_RATIO: load / context.partner_capacity[partner_rows],
        CERT_COVERAGE: certified / products_per_row,
        CERT_LEVEL: cert_levels / (products_per_row * schema.MAX_CERT_LEVEL),
        REGION_MATCH: context.partner_regions[partner_rows, region_index],
        HOME_REGION_MATCH: context.partner_home_region[partner_rows] == region_index,
        EMBEDDING_SIMILARITY: similarity,
        TENURE_DAYS: np.maximum(seconds - context.partner_joined_seconds[partner_rows], 0) / SECONDS_PER_DAY,
        DEAL_SIZE_FIT: log_amount - mean_log_won_amount,
        ENGAGEMENT_30D: engaged_30d,
        ENGAGEMENT_TREND: engaged_30d - earlier_monthly,
        TIER_LEVEL: context.partner_tier[partner_rows],
        DEAL_PRODUCT_COUNT: products_per_row,
        LOG_AMOUNT: log_amount,
    }
    return np.column_stack([np.asarray(columns[name], dtype=np.float32) for name in FEATURE_COLUMNS])
