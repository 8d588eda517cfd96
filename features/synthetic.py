"""A synthetic partner ecosystem with known ground truth.

`generate_ecosystem(config)` returns the five tables of `features.schema` and a `GroundTruth`: the
latent partner skills, capacities, deal-size sweet spots, pair affinities and disengagement
episodes that produced the tables, and the true win probability of every historical attempt.
The true model lives in one place, `true_win_logit`; `oracle_probability` applies it to any
(deal, candidate partner) slate so that evaluations can compare a ranking with the oracle's.

How the world works:
- Partners specialise in a few products of one product family, operate in 1-3 regions (home
  first), have a tier (follows skill and size), a true capacity (the declared one is a noisy,
  slightly optimistic copy), certifications that follow skill, and a deal-size sweet spot.
- Deals arrive with mild growth, need 1-3 co-occurring products and have lognormal amounts by
  segment.
- Legacy routing chose who worked each deal: partners operating in the deal's region that had
  joined by then, weighted towards a noisy skill proxy for the deal's primary product (selection
  bias, as in real CRMs). A share of multi-product deals is worked by a co-sell pair.
- Outcomes are Bernoulli draws of the true probability; both rows of a team share one draw.
- During disengagement episodes partners win less, engage much less (and less already in the 60
  days before) and write more negative messages.

Load, precisely: the load ratio of partner p for a deal created at t is the number of outcomes rows
of p whose deal was created in [t - 30 days, t), divided by p's true capacity (deals per 30 days).
Tenure is t - joined_at in days. All times are naive datetime64[ns] meaning UTC, in whole seconds
(the dtype features.io reads back).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd

from features import schema, text
from features.progress import SILENT, Progress

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
StrArray = npt.NDArray[np.str_]
PartnerIds: TypeAlias = Sequence[str] | pd.Series | np.ndarray

SECONDS_PER_DAY = 86_400
LOAD_WINDOW_DAYS = 30  # the load window is [created_at - 30 days, created_at)
NEW_PARTNER_TENURE_DAYS = 90.0  # e-folding tenure of the new-partner penalty
NON_OPERATING_REGION_SKILL = -3.0
PRE_EPISODE_DAYS = 60.0  # engagement and sentiment start sliding this long before an episode

# Columns of the ground-truth tables (the ecosystem tables' columns live in features.schema).
PARTNER_A = "partner_a"
PARTNER_B = "partner_b"
AFFINITY = "affinity"
EPISODE_START = "start"
EPISODE_END = "end"
TRUTH_DIRNAME = "truth"

# --- the shape of the world (fixed; the config holds what experiments vary) ---------------------

REGION_WEIGHTS = (0.22, 0.15, 0.08, 0.12, 0.14, 0.06, 0.10, 0.13)  # aligned with schema.REGIONS
_REGION_GROUPS = (0, 0, 0, 1, 1, 1, 2, 2)  # americas, emea, apac: second regions stay nearby
SEGMENT_WEIGHTS = (0.40, 0.30, 0.18, 0.12)  # aligned with schema.SEGMENTS
SEGMENT_MEDIAN_AMOUNT = (12_000.0, 50_000.0, 220_000.0, 110_000.0)  # USD
SEGMENT_AMOUNT_SIGMA = (0.6, 0.7, 0.8, 0.8)  # lognormal sigma
PRODUCT_POPULARITY = (0.14, 0.10, 0.11, 0.08, 0.07, 0.11, 0.08, 0.07, 0.07, 0.06, 0.04, 0.07)
# Product families: partners specialise inside one, multi-product deals mostly stay inside one.
PRODUCT_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("firewall", "sd-wan", "networking"),
    ("firewall", "endpoint-security", "identity-access", "managed-detection"),
    ("cloud-migration", "data-backup", "storage", "data-analytics"),
    ("collaboration", "erp-integration", "data-analytics", "identity-access"),
)
TIER_SHARES = (0.45, 0.30, 0.17, 0.08)  # aligned with schema.TIERS
TIER_ENGAGEMENT = (0.6, 0.9, 1.3, 1.8)  # relative engagement rate per tier
ENGAGEMENT_KIND_WEIGHTS = (0.45, 0.15, 0.15, 0.15, 0.10)  # aligned with schema.ENGAGEMENT_KINDS
CHANNEL_WEIGHTS = (0.5, 0.3, 0.2)  # aligned with schema.COMMUNICATION_CHANNELS

_JOIN_SPREAD_DAYS = 3 * 365  # partners join from 3 years before the window until its end
_DAYS_PER_MONTH = 30.0
_EPISODE_ACTIVITY = 0.1  # engagement multiplier inside an episode
_PRE_EPISODE_ACTIVITY_DROP = 0.6  # engagement multiplier falls linearly to 0.4 at episode start
_EPISODE_SENTIMENT = -0.6
_ALLIES_PER_PARTNER = 1.5
_ALLY_PREFERENCE = 0.8  # a team lead takes a known ally when it can work the deal
_ROUTING_PROXY_NOISE = 0.8  # sd of the legacy router's error about a partner's product skill
_CAPACITY_HEADROOM = 2.0  # true capacity / mean routed load, before partner-level spread


@dataclass(frozen=True)
class TruthCoefficients:
    """Coefficients of the true win logit, in logits per unit of each term (see `true_win_logit`)."""

    intercept: float = -1.3
    skill: float = 0.9  # per logit of mean product skill over the deal's products
    region: float = 0.6  # per unit of region skill in the deal's region (>= 0 where operating, else -3)
    certification: float = 0.8  # at full coverage: expert (level 3) in every product of the deal
    size_fit: float = 0.35  # per e-fold between the amount and the partner's sweet spot
    overload: float = 1.0  # per unit of load ratio above 1
    new_partner: float = 1.0  # at tenure 0, decaying with e-folding time 90 days
    disengaged: float = 1.5  # while the deal date is inside a disengagement episode
    affinity: float = 1.0  # co-sell teams only, per unit of pair affinity in [-1, 1]


@dataclass(frozen=True)
class EcosystemConfig:
    """Sizes, window and rates of one synthetic ecosystem; `coefficients` define the true win model."""

    partners: int = 2000
    deals: int = 20000
    seed: int = 0
    start: str = "2023-01-01"  # first day of the deal window
    days: int = 730  # length of the deal window
    attempts_per_deal: float = 5.0  # mean partners who worked one deal; outcome rows ~ deals x this
    team_deal_share: float = 0.1  # share of multi-product deals worked by a co-sell pair
    engagement_per_partner_month: float = 1.0  # baseline events per active partner and 30 days
    messages_per_partner_month: float = 0.25
    registration_share: float = 0.05  # deals registered by one of their attempting partners
    routing_skill_share: float = 0.6  # legacy routing weight that follows the skill proxy (rest uniform)
    disengagement_per_partner_year: float = 0.15  # episode rate
    coefficients: TruthCoefficients = field(default_factory=TruthCoefficients)

    def __post_init__(self) -> None:
        if self.partners < 1 or self.deals < 0 or self.days < 1:
            raise ValueError("partners >= 1, deals >= 0 and days >= 1 are required")
        if self.attempts_per_deal < 1:
            raise ValueError(f"attempts_per_deal must be >= 1, got {self.attempts_per_deal}")
        for name in ("team_deal_share", "registration_share", "routing_skill_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


class _EpisodeIndex:
    """Disengagement episodes sorted by (partner position, start) for vectorised point lookups."""

    def __init__(self, positions: IntArray, start_seconds: IntArray, end_seconds: IntArray) -> None:
        order = np.lexsort((start_seconds, positions))
        self.positions = positions[order]
        self.start_seconds = start_seconds[order]
        self.end_seconds = end_seconds[order]

    def _next_episode(self, positions: IntArray, seconds: IntArray) -> IntArray:
        """Per query: index of the first episode sorting after (partner, time) in (partner, start) order."""
        origin = min(int(self.start_seconds.min()), int(seconds.min()))
        span = max(int(self.start_seconds.max()), int(seconds.max())) - origin + 1
        keys = self.positions * span + (self.start_seconds - origin)
        return np.searchsorted(keys, positions * span + (seconds - origin), side="right")

    def inside(self, positions: IntArray, seconds: IntArray) -> BoolArray:
        """(m,) whether each partner is inside one of its episodes [start, end) at `seconds`."""
        if self.positions.size == 0 or positions.size == 0:
            return np.zeros(positions.shape, dtype=bool)
        current = self._next_episode(positions, seconds) - 1
        safe = np.maximum(current, 0)
        return (current >= 0) & (self.positions[safe] == positions) & (seconds < self.end_seconds[safe])

    def days_to_next_start(self, positions: IntArray, seconds: IntArray) -> FloatArray:
        """(m,) days until the partner's next episode starts (inf when none follows)."""
        if self.positions.size == 0 or positions.size == 0:
            return np.full(positions.shape, np.inf)
        following = self._next_episode(positions, seconds)
        safe = np.minimum(following, self.positions.size - 1)
        has_next = (following < self.positions.size) & (self.positions[safe] == positions)
        return np.where(has_next, (self.start_seconds[safe] - seconds) / SECONDS_PER_DAY, np.inf)


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """The latent state behind one synthetic ecosystem (n partners, P products, R regions).

    partner_ids: (n,) str; row i of every per-partner array belongs to partner_ids[i].
    product_skill: (n, P) float32 logits, columns as schema.PRODUCTS; mostly in -1.3..0, a few
        specialities 0.3..2.6, plus a partner-wide quality shift.
    region_skill: (n, R) float32, columns as schema.REGIONS; >= 0 where the partner operates
        (home highest), NON_OPERATING_REGION_SKILL elsewhere.
    certification_levels: (n, P) int8 in 0..3, the levels in the partners table.
    true_capacity: (n,) float64 deals per 30 days, > 0.
    size_sweet_spot: (n,) float64 USD, the amount the partner wins best at.
    affinity: one row per known pair (PARTNER_A < PARTNER_B, AFFINITY in [-1, 1]); 0 for others.
    disengagement: episodes (schema.PARTNER_ID, EPISODE_START, EPISODE_END), [start, end) and
        non-overlapping per partner.
    outcome_probability: (rows,) float64 in (0, 1): the true win probability of each outcomes row.
    message_sentiment: (messages,) float64 in [-1, 1]: the latent sentiment of each message.
    """

    partner_ids: StrArray
    product_skill: npt.NDArray[np.float32]
    region_skill: npt.NDArray[np.float32]
    certification_levels: npt.NDArray[np.int8]
    true_capacity: FloatArray
    size_sweet_spot: FloatArray
    affinity: pd.DataFrame
    disengagement: pd.DataFrame
    coefficients: TruthCoefficients
    outcome_probability: FloatArray
    message_sentiment: FloatArray

    @cached_property
    def _partner_index(self) -> pd.Index:
        return pd.Index(self.partner_ids)

    @cached_property
    def _episodes(self) -> _EpisodeIndex:
        return _EpisodeIndex(
            self.positions(self.disengagement[schema.PARTNER_ID]),
            _seconds(self.disengagement[EPISODE_START]),
            _seconds(self.disengagement[EPISODE_END]),
        )

    @cached_property
    def _affinity_keys(self) -> tuple[IntArray, FloatArray]:
        """Sorted `low * n + high` position keys of the known pairs and their affinities."""
        keys = _pair_keys(
            self.positions(self.affinity[PARTNER_A]), self.positions(self.affinity[PARTNER_B]), self.partner_ids.size
        )
        order = np.argsort(keys)
        return keys[order], self.affinity[AFFINITY].to_numpy(dtype=np.float64)[order]

    def positions(self, partner_ids: PartnerIds) -> IntArray:
        """(m,) row positions of `partner_ids` in the per-partner arrays; ValueError for unknown ids."""
        return _positions(self._partner_index, partner_ids)

    def in_disengagement(self, partner_positions: IntArray, created_at: npt.NDArray[np.datetime64]) -> BoolArray:
        """(m,) whether each partner is inside a disengagement episode at `created_at`."""
        return self._episodes.inside(partner_positions, _datetime_seconds(created_at))

    def pair_affinity(self, positions_a: IntArray, positions_b: IntArray) -> FloatArray:
        """(m,) affinity in [-1, 1] of each (a, b) partner pair, symmetric; 0 for unknown pairs."""
        keys, values = self._affinity_keys
        query = _pair_keys(positions_a, positions_b, self.partner_ids.size)
        if keys.size == 0:
            return np.zeros(query.shape)
        slot = np.minimum(np.searchsorted(keys, query), keys.size - 1)
        return np.where(keys[slot] == query, values[slot], 0.0)

    def save(self, directory: str | Path) -> Path:
        """Write to `directory`/truth (arrays.npz, affinity/disengagement parquet, coefficients.json)."""
        root = Path(directory) / TRUTH_DIRNAME
        root.mkdir(parents=True, exist_ok=True)
        np.savez(
            root / "arrays.npz",
            partner_ids=self.partner_ids,
            product_skill=self.product_skill,
            region_skill=self.region_skill,
            certification_levels=self.certification_levels,
            true_capacity=self.true_capacity,
            size_sweet_spot=self.size_sweet_spot,
            outcome_probability=self.outcome_probability,
            message_sentiment=self.message_sentiment,
        )
        self.affinity.to_parquet(root / "affinity.parquet", index=False)
        self.disengagement.to_parquet(root / "disengagement.parquet", index=False)
        (root / "coefficients.json").write_text(json.dumps(asdict(self.coefficients), indent=2) + "\n")
        return root

    @classmethod
    def load(cls, directory: str | Path) -> GroundTruth:
        """Read what `save(directory)` wrote."""
        root = Path(directory) / TRUTH_DIRNAME
        with np.load(root / "arrays.npz", allow_pickle=False) as arrays:
            return cls(
                partner_ids=arrays["partner_ids"],
                product_skill=arrays["product_skill"],
                region_skill=arrays["region_skill"],
                certification_levels=arrays["certification_levels"],
                true_capacity=arrays["true_capacity"],
                size_sweet_spot=arrays["size_sweet_spot"],
                affinity=pd.read_parquet(root / "affinity.parquet"),
                disengagement=pd.read_parquet(root / "disengagement.parquet"),
                coefficients=TruthCoefficients(**json.loads((root / "coefficients.json").read_text())),
                outcome_probability=arrays["outcome_probability"],
                message_sentiment=arrays["message_sentiment"],
            )


# --- the true model -----------------------------------------------------------------------------


def true_win_logit(
    truth: GroundTruth,
    partner_positions: IntArray,
    deal_products: BoolArray,
    deal_region_index: IntArray,
    amount: FloatArray,
    created_at: npt.NDArray[np.datetime64],
    load_ratio: FloatArray,
    tenure_days: FloatArray,
) -> FloatArray:
    """(m,) true win logit of m solo (deal, partner) attempts.

    logit = intercept + skill * mean(product_skill over the deal's products)
            + region * region_skill[deal region] + certification * coverage
            - size_fit * |log(amount / sweet spot)| - overload * max(0, load_ratio - 1)
            - new_partner * exp(-max(tenure_days, 0) / 90) - disengaged * [inside an episode]

    partner_positions: (m,) rows of `truth`; deal_products: (m, P) bool, >= 1 per row;
    deal_region_index: (m,) index into schema.REGIONS; amount: (m,) USD > 0; created_at: (m,)
    deal creation times; load_ratio: (m,) >= 0 (see the module docstring); tenure_days: (m,).
    Coverage is the mean certification level over the deal's products divided by 3, in [0, 1].
    """
    coefficients = truth.coefficients
    products = np.asarray(deal_products, dtype=bool)
    product_count = products.sum(axis=1)
    if (product_count == 0).any():
        raise ValueError("every deal needs at least one product")
    skill = (truth.product_skill[partner_positions] * products).sum(axis=1, dtype=np.float64) / product_count
    coverage = (truth.certification_levels[partner_positions] * products).sum(axis=1, dtype=np.float64) / (
        product_count * schema.MAX_CERT_LEVEL
    )
    region = truth.region_skill[partner_positions, deal_region_index].astype(np.float64)
    size_misfit = np.abs(np.log(np.asarray(amount, dtype=np.float64) / truth.size_sweet_spot[partner_positions]))
    overload = np.maximum(np.asarray(load_ratio, dtype=np.float64) - 1.0, 0.0)
    newness = np.exp(-np.maximum(np.asarray(tenure_days, dtype=np.float64), 0.0) / NEW_PARTNER_TENURE_DAYS)
    disengaged = truth.in_disengagement(partner_positions, created_at)
    return (
        coefficients.intercept
        + coefficients.skill * skill
        + coefficients.region * region
        + coefficients.certification * coverage
        - coefficients.size_fit * size_misfit
        - coefficients.overload * overload
        - coefficients.new_partner * newness
        - coefficients.disengaged * disengaged
    )


def true_team_probability(
    truth: GroundTruth, solo_probability_a: FloatArray, solo_probability_b: FloatArray, affinity: FloatArray
) -> FloatArray:
    """(m,) true win probability of co-sell pairs in (0, 1).

    logit(1 - (1 - p_a)(1 - p_b)) + affinity_coefficient * affinity: the chance that either
    partner alone would win, shifted by how well the pair works together.
    """
    log_both_lose = np.log1p(-solo_probability_a) + np.log1p(-solo_probability_b)
    either_logit = np.log(-np.expm1(log_both_lose)) - log_both_lose
    return _sigmoid(either_logit + truth.coefficients.affinity * affinity)


def oracle_probability(
    truth: GroundTruth,
    ecosystem: schema.Ecosystem,
    deal_rows: pd.DataFrame,
    candidates: pd.DataFrame | Sequence[Sequence[str]] | None = None,
) -> FloatArray:
    """True win probability of arbitrary (deal, partner) candidates, in (0, 1).

    deal_rows: deals with DEAL_ID (unique), CREATED_AT, DEAL_REGION, DEAL_PRODUCTS and AMOUNT;
        historical or new. candidates: either a pairs frame (DEAL_ID, PARTNER_ID, optional
        TEAM_ID whose non-empty values join exactly two rows of one deal into a co-sell team) or
        one sequence of partner ids per row of `deal_rows` (all solo). Shorthand for pairs on the
        ecosystem's own deals: `oracle_probability(truth, ecosystem, pairs)`.
    Returns (m,) float64 aligned with the pairs frame rows, or with the concatenated slates.

    Load ratios count the partner's outcomes rows in `ecosystem` created in [created_at - 30 days,
    created_at) (the recorded history, not a hypothetical re-routing); tenure comes from the
    partners table. On `ecosystem.outcomes` itself this reproduces `truth.outcome_probability`.
    """
    if candidates is None:
        deal_rows, candidates = ecosystem.deals, deal_rows
    if not deal_rows[schema.DEAL_ID].is_unique:
        raise ValueError("deal_rows must have unique deal ids")
    if isinstance(candidates, pd.DataFrame):
        deal_positions = pd.Index(deal_rows[schema.DEAL_ID]).get_indexer(candidates[schema.DEAL_ID]).astype(np.int64)
        if (deal_positions < 0).any():
            raise ValueError("every candidate's deal id must be in deal_rows")
        partner_ids = candidates[schema.PARTNER_ID].to_numpy(dtype=object)
        team_ids = candidates.get(schema.TEAM_ID)
        team_codes = _team_codes(team_ids)
    else:
        if len(candidates) != len(deal_rows):
            raise ValueError(f"got {len(candidates)} slates for {len(deal_rows)} deals")
        sizes = np.array([len(slate) for slate in candidates], dtype=np.int64)
        deal_positions = np.repeat(np.arange(len(deal_rows), dtype=np.int64), sizes)
        partner_ids = np.array([partner for slate in candidates for partner in slate], dtype=object)
        team_codes = np.full(partner_ids.size, -1, dtype=np.int64)

    partner_positions = truth.positions(partner_ids)
    deal_seconds = _seconds(deal_rows[schema.CREATED_AT])
    history_positions, history_seconds = _attempt_history(truth._partner_index, ecosystem)
    return _attempt_probability(
        truth,
        history_positions,
        history_seconds,
        _joined_seconds(truth, ecosystem.partners),
        partner_positions,
        deal_positions,
        deal_seconds,
        product_matrix(deal_rows[schema.DEAL_PRODUCTS]),
        _region_index(deal_rows[schema.DEAL_REGION]),
        deal_rows[schema.AMOUNT].to_numpy(dtype=np.float64),
        team_codes,
    )


def recent_attempt_counts(ecosystem: schema.Ecosystem, partner_ids: PartnerIds, created_at: pd.Series) -> IntArray:
    """(m,) int64: outcomes rows of each partner whose deal was created in [created_at - 30 days, created_at).

    The numerator of the load ratio; `created_at` is a datetime64 column aligned with `partner_ids`.
    """
    partner_index = pd.Index(ecosystem.partners[schema.PARTNER_ID])
    history_positions, history_seconds = _attempt_history(partner_index, ecosystem)
    return _recent_counts(
        history_positions, history_seconds, _positions(partner_index, partner_ids), _seconds(created_at)
    )


def product_matrix(cells: pd.Series | Sequence[str]) -> BoolArray:
    """(m, P) bool: which schema.PRODUCTS each `|`-joined products cell lists; ValueError on unknowns."""
    parts = pd.Series(np.asarray(cells, dtype=object)).str.split(schema.LIST_SEPARATOR).explode()
    parts = parts[parts.notna() & (parts != "")]
    codes = pd.Index(schema.PRODUCTS).get_indexer(parts.to_numpy(dtype=object))
    if (codes < 0).any():
        raise ValueError(f"unknown products, e.g. {sorted(set(parts[codes < 0]))[:5]}")
    matrix = np.zeros((len(cells), len(schema.PRODUCTS)), dtype=bool)
    matrix[parts.index.to_numpy(), codes] = True
    return matrix


# --- shared internals of the true model ---------------------------------------------------------


def _sigmoid(logit: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-logit))


def _seconds(timestamps: pd.Series) -> IntArray:
    """Whole seconds since the Unix epoch of a datetime64 column (naive, UTC meaning)."""
    return _datetime_seconds(timestamps.to_numpy(dtype="datetime64[s]"))


def _datetime_seconds(timestamps: npt.NDArray[np.datetime64]) -> IntArray:
    return np.asarray(timestamps).astype("datetime64[s]").astype(np.int64)


def _timestamps(seconds: IntArray) -> npt.NDArray[np.datetime64]:
    return seconds.astype("datetime64[s]").astype("datetime64[ns]")


def _pair_keys(positions_a: IntArray, positions_b: IntArray, partner_count: int) -> IntArray:
    """Order-free pair key `min * n + max`."""
    return np.minimum(positions_a, positions_b) * partner_count + np.maximum(positions_a, positions_b)


def _region_index(regions: pd.Series | Sequence[str]) -> IntArray:
    codes = pd.Index(schema.REGIONS).get_indexer(np.asarray(regions, dtype=object)).astype(np.int64)
    if (codes < 0).any():
        raise ValueError("unknown regions in deal rows")
    return codes


def _team_codes(team_ids: pd.Series | None) -> IntArray:
    """(m,) int64 team code per row, -1 for solo rows (missing or empty team id)."""
    if team_ids is None:
        return np.empty(0, dtype=np.int64)
    values = team_ids.fillna("").to_numpy(dtype=object)
    codes, _ = pd.factorize(values)
    return np.where(values == "", -1, codes).astype(np.int64)


def _joined_seconds(truth: GroundTruth, partners: pd.DataFrame) -> IntArray:
    """(n,) joined_at seconds aligned with truth.partner_ids."""
    joined = np.empty(truth.partner_ids.size, dtype=np.int64)
    joined[truth.positions(partners[schema.PARTNER_ID])] = _seconds(partners[schema.JOINED_AT])
    return joined


def _positions(index: pd.Index, partner_ids: PartnerIds) -> IntArray:
    found = index.get_indexer(np.asarray(partner_ids, dtype=object)).astype(np.int64)
    if (found < 0).any():
        unknown = np.asarray(partner_ids, dtype=object)[found < 0][:5].tolist()
        raise ValueError(f"unknown partner ids, e.g. {unknown}")
    return found


def _attempt_history(partner_index: pd.Index, ecosystem: schema.Ecosystem) -> tuple[IntArray, IntArray]:
    """Partner positions (in `partner_index`) and deal creation seconds of every outcomes row: the load history."""
    deal_index = pd.Index(ecosystem.deals[schema.DEAL_ID])
    history_deals = deal_index.get_indexer(ecosystem.outcomes[schema.DEAL_ID])
    if (history_deals < 0).any():
        raise ValueError("outcomes reference deals missing from the deals table")
    return (
        _positions(partner_index, ecosystem.outcomes[schema.PARTNER_ID]),
        _seconds(ecosystem.deals[schema.CREATED_AT])[history_deals],
    )


def _recent_counts(
    history_positions: IntArray, history_seconds: IntArray, query_positions: IntArray, query_seconds: IntArray
) -> IntArray:
    """(m,) history rows of the query's partner with time in [t - 30 days, t), via sorted composite keys."""
    if history_positions.size == 0 or query_positions.size == 0:
        return np.zeros(query_positions.shape, dtype=np.int64)
    window = LOAD_WINDOW_DAYS * SECONDS_PER_DAY
    origin = min(int(history_seconds.min()), int(query_seconds.min())) - window
    span = max(int(history_seconds.max()), int(query_seconds.max())) - origin + 1
    keys = np.sort(history_positions * span + (history_seconds - origin))
    query = query_positions * span + (query_seconds - origin)
    return (np.searchsorted(keys, query, side="left") - np.searchsorted(keys, query - window, side="left")).astype(
        np.int64
    )


def _attempt_probability(
    truth: GroundTruth,
    history_positions: IntArray,
    history_seconds: IntArray,
    joined_seconds: IntArray,
    partner_positions: IntArray,
    deal_positions: IntArray,
    deal_seconds: IntArray,
    deal_products: BoolArray,
    deal_region: IntArray,
    deal_amount: FloatArray,
    team_codes: IntArray,
) -> FloatArray:
    """(m,) true probability of attempts (partner_positions[i] on deal deal_positions[i]).

    Per-deal arrays are indexed by `deal_positions`; `team_codes` (m,) pairs rows into teams
    (-1 solo, or empty for all solo). The generator and `oracle_probability` both end here.
    """
    seconds = deal_seconds[deal_positions]
    load_ratio = (
        _recent_counts(history_positions, history_seconds, partner_positions, seconds)
        / truth.true_capacity[partner_positions]
    )
    solo = _sigmoid(
        true_win_logit(
            truth,
            partner_positions,
            deal_products[deal_positions],
            deal_region[deal_positions],
            deal_amount[deal_positions],
            _timestamps(seconds),
            load_ratio,
            (seconds - joined_seconds[partner_positions]) / SECONDS_PER_DAY,
        )
    )
    in_team = np.flatnonzero(team_codes >= 0)
    if in_team.size == 0:
        return solo
    rows = in_team[np.argsort(team_codes[in_team], kind="stable")]
    first, second = rows[0::2], rows[1::2]
    if (
        rows.size % 2
        or not np.array_equal(team_codes[first], team_codes[second])
        or np.any(np.diff(team_codes[first]) == 0)
        or not np.array_equal(deal_positions[first], deal_positions[second])
    ):
        raise ValueError("a co-sell team must be exactly two rows of one deal")
    team = true_team_probability(
        truth, solo[first], solo[second], truth.pair_affinity(partner_positions[first], partner_positions[second])
    )
    probability = solo.copy()
    probability[first] = team
    probability[second] = team
    return probability


# --- generation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Window:
    start_seconds: int
    end_seconds: int

    @property
    def seconds(self) -> int:
        return self.end_seconds - self.start_seconds


@dataclass(frozen=True)
class _PartnerDraws:
    """Per-partner latent and observed draws, (n,) or (n, P) / (n, R)."""

    home: IntArray
    operating: BoolArray
    tier: IntArray
    joined_seconds: IntArray
    product_skill: npt.NDArray[np.float32]
    region_skill: npt.NDArray[np.float32]
    certification_levels: npt.NDArray[np.int8]
    true_capacity: FloatArray
    declared_capacity: IntArray
    size_sweet_spot: FloatArray


@dataclass(frozen=True)
class _DealDraws:
    """Per-deal draws, (d,) or (d, P); deals are sorted by creation time."""

    created_seconds: IntArray
    region: IntArray
    segment: IntArray
    primary: IntArray
    products: BoolArray
    amount: FloatArray


@dataclass(frozen=True)
class _Attempts:
    """Outcomes rows before their outcome: (rows,) deal index, partner position and team code."""

    deal: IntArray
    partner: IntArray
    team: IntArray


def _weighted_subset(rng: np.random.Generator, weights: FloatArray, counts: IntArray) -> BoolArray:
    """(n, K) bool: row i marks min(counts[i], #positive weights) distinct columns drawn without
    replacement with probability proportional to `weights` (Gumbel top-k)."""
    with np.errstate(divide="ignore"):
        keys = np.log(weights) + rng.gumbel(size=weights.shape)
    order = np.argsort(-keys, axis=1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(weights.shape[1]), weights.shape), axis=1)
    return (ranks < counts[:, None]) & (weights > 0)


def _family_matrix() -> BoolArray:
    """(families, P) membership of schema.PRODUCTS in PRODUCT_FAMILIES."""
    return np.array([[product in family for product in schema.PRODUCTS] for family in PRODUCT_FAMILIES])


def _list_cells(first: IntArray, others: BoolArray, vocabulary: tuple[str, ...]) -> list[str]:
    """`|`-joined cells listing vocabulary[first[i]] then the other marked columns in vocabulary order."""
    others = others.copy()
    others[np.arange(first.size), first] = False
    # Few distinct (first, others) combinations exist: format each once.
    codes = first * (1 << len(vocabulary)) + (others * (1 << np.arange(len(vocabulary)))).sum(axis=1)
    unique_codes, inverse = np.unique(codes, return_inverse=True)
    cells = []
    for code in unique_codes.tolist():
        lead, mask = divmod(code, 1 << len(vocabulary))
        rest = [name for bit, name in enumerate(vocabulary) if mask >> bit & 1]
        cells.append(schema.join_list([vocabulary[lead], *rest]))
    return [cells[i] for i in inverse.tolist()]


def _ids(prefix: str, count: int, width: int) -> StrArray:
    """(count,) ids `prefix` + 1-based zero-padded number, e.g. "P000001"."""
    return np.array([f"{prefix}{number:0{width}d}" for number in range(1, count + 1)])


def _draw_partners(rng: np.random.Generator, config: EcosystemConfig, window: _Window) -> _PartnerDraws:
    """Regions, skills, tier, join date, capacity, certifications and sweet spot of every partner."""
    n, products, regions = config.partners, len(schema.PRODUCTS), len(schema.REGIONS)
    home = rng.choice(regions, size=n, p=REGION_WEIGHTS).astype(np.int64)
    groups = np.array(_REGION_GROUPS)
    region_weights = np.where(groups[home][:, None] == groups[None, :], 5.0, 1.0) * np.array(REGION_WEIGHTS)
    region_weights[np.arange(n), home] = 0.0
    operating = _weighted_subset(rng, region_weights, rng.choice(3, size=n, p=(0.55, 0.33, 0.12)))
    operating[np.arange(n), home] = True
    region_skill = np.where(operating, np.clip(rng.normal(0.3, 0.25, (n, regions)), 0.0, None), 0.0)
    region_skill[np.arange(n), home] = np.clip(rng.normal(0.8, 0.25, n), 0.0, None)
    region_skill = np.where(operating, region_skill, NON_OPERATING_REGION_SKILL)

    family = rng.integers(len(PRODUCT_FAMILIES), size=n)
    family_weights = (0.05 + _family_matrix()[family]) * np.array(PRODUCT_POPULARITY)
    specialities = _weighted_subset(rng, family_weights, np.minimum(1 + rng.poisson(1.0, n), 5))
    quality = rng.normal(0.0, 0.3, n)  # partner-wide execution quality
    product_skill = (
        np.where(
            specialities,
            np.clip(rng.normal(1.3, 0.5, (n, products)), 0.3, 2.6),
            np.clip(rng.normal(-0.6, 0.3, (n, products)), -1.3, -0.1),
        )
        + quality[:, None]
    )

    size = rng.normal(0.0, 1.0, n)  # partner size: capacity, deal size, tier
    top_skill = product_skill.max(axis=1)
    skill_z = (top_skill - top_skill.mean()) / max(float(top_skill.std()), 1e-9)
    tier_score = 0.55 * skill_z + 0.45 * size + rng.normal(0.0, 0.5, n)
    tier_rank = np.argsort(np.argsort(tier_score)) / n
    tier = np.searchsorted(np.cumsum(TIER_SHARES)[:-1], tier_rank, side="right").astype(np.int64)

    joined_seconds = window.start_seconds + rng.integers(
        -_JOIN_SPREAD_DAYS * SECONDS_PER_DAY, window.seconds, size=n, dtype=np.int64
    )
    # Capacity is scaled to the routed load so that overload matters at any ecosystem size.
    active_days = (window.end_seconds - np.maximum(joined_seconds, window.start_seconds)).sum() / SECONDS_PER_DAY
    routed_per_month = config.deals * config.attempts_per_deal * LOAD_WINDOW_DAYS / max(active_days, 1.0)
    # Skilled partners get more deals from the router, and staff for it, but not fully.
    true_capacity = np.maximum(
        _CAPACITY_HEADROOM * routed_per_month * np.exp(0.3 * size + 0.3 * skill_z + rng.normal(0.0, 0.2, n)), 0.25
    )
    declared_capacity = np.maximum(np.rint(true_capacity * np.exp(rng.normal(0.1, 0.25, n))), 1).astype(np.int64)

    certification_latent = 1.0 * product_skill + 0.5 + 0.25 * tier[:, None] + rng.normal(0.0, 0.6, (n, products))
    certification_levels = np.clip(np.floor(certification_latent), 0, schema.MAX_CERT_LEVEL).astype(np.int8)
    size_sweet_spot = np.exp(np.log(35_000.0) + 0.7 * size + 0.35 * tier + rng.normal(0.0, 0.6, n))
    return _PartnerDraws(
        home=home,
        operating=operating,
        tier=tier,
        joined_seconds=joined_seconds,
        product_skill=product_skill.astype(np.float32),
        region_skill=region_skill.astype(np.float32),
        certification_levels=certification_levels,
        true_capacity=true_capacity,
        declared_capacity=declared_capacity,
        size_sweet_spot=size_sweet_spot,
    )


def _partners_table(
    rng: np.random.Generator, text_rng: np.random.Generator, partner_ids: StrArray, draws: _PartnerDraws
) -> pd.DataFrame:
    """The partners table; profiles are written from noisily perceived skills."""
    n = partner_ids.size
    home_names = [schema.REGIONS[i] for i in draws.home.tolist()]
    names = text.partner_names(text_rng, home_names)
    region_cells = _list_cells(draws.home, draws.operating, schema.REGIONS)
    certifications = [
        schema.format_certifications(dict(zip(schema.PRODUCTS, levels, strict=True)))
        for levels in draws.certification_levels.tolist()
    ]
    # Profiles follow the latent skills noisily: a noisy skill decides what counts as strong.
    perceived = draws.product_skill + rng.normal(0.0, 0.3, draws.product_skill.shape)
    strength_order = np.argsort(-perceived, axis=1).tolist()
    perceived_strong = (perceived > 0.3).tolist()
    fluff_product = rng.integers(len(schema.PRODUCTS), size=n).tolist()
    fluff = (rng.random(n) < 0.35).tolist()
    log_medians = np.log(SEGMENT_MEDIAN_AMOUNT)
    focus = np.abs(np.log(draws.size_sweet_spot)[:, None] - log_medians[None, :]).argmin(axis=1).tolist()
    profiles = []
    for i in range(n):
        strong = [schema.PRODUCTS[p] for p in strength_order[i] if perceived_strong[i][p]]
        strong = strong or [schema.PRODUCTS[strength_order[i][0]]]
        extra = schema.PRODUCTS[fluff_product[i]]
        weak = [extra] if fluff[i] and extra not in strong else []
        profiles.append(
            text.partner_profile_text(
                text_rng,
                names[i],
                strong,
                weak,
                schema.split_list(region_cells[i]),
                schema.TIERS[draws.tier[i]],
                segment=schema.SEGMENTS[focus[i]],
            )
        )
    return pd.DataFrame(
        {
            schema.PARTNER_ID: partner_ids,
            schema.PARTNER_NAME: names,
            schema.PROFILE_TEXT: profiles,
            schema.HOME_REGION: home_names,
            schema.PARTNER_REGIONS: region_cells,
            schema.CERTIFICATIONS: certifications,
            schema.TIER: np.array(schema.TIERS)[draws.tier],
            schema.CAPACITY: draws.declared_capacity,
            schema.JOINED_AT: _timestamps(draws.joined_seconds),
        }
    )


def _draw_episodes(
    rng: np.random.Generator, config: EcosystemConfig, window: _Window, joined_seconds: IntArray
) -> tuple[IntArray, IntArray, IntArray]:
    """Up to two non-overlapping disengagement episodes per partner: (positions, start, end) seconds."""
    n = joined_seconds.size
    lead_in = 30 * SECONDS_PER_DAY  # no episode in a partner's first month of the window
    earliest = np.maximum(joined_seconds, window.start_seconds) + lead_in
    room = np.maximum(window.end_seconds - earliest, 0)
    count = np.minimum(rng.poisson(config.disengagement_per_partner_year * room / (365 * SECONDS_PER_DAY)), 2)
    starts = earliest[:, None] + (rng.random((n, 2)) * room[:, None]).astype(np.int64)
    starts = np.where(count[:, None] == 2, np.sort(starts, axis=1), starts)
    durations = (np.clip(np.exp(rng.normal(np.log(75.0), 0.5, (n, 2))), 21, 240) * SECONDS_PER_DAY).astype(np.int64)
    ends = starts + durations
    keep = np.arange(2)[None, :] < count[:, None]
    keep[:, 1] &= starts[:, 1] >= ends[:, 0] + lead_in  # the second episode follows a recovery
    positions = np.broadcast_to(np.arange(n, dtype=np.int64)[:, None], (n, 2))
    return positions[keep], starts[keep], ends[keep]


def _draw_affinity(rng: np.random.Generator, home: IntArray) -> tuple[IntArray, IntArray, FloatArray]:
    """Known partner pairs (low, high positions) from the same home region and their affinity."""
    n = home.size
    lows = np.repeat(np.arange(n, dtype=np.int64), rng.poisson(_ALLIES_PER_PARTNER, n))
    by_home = np.argsort(home, kind="stable")
    region_start = np.searchsorted(home[by_home], home[lows], side="left")
    region_size = np.bincount(home, minlength=len(schema.REGIONS))[home[lows]]
    highs = by_home[region_start + (rng.random(lows.size) * region_size).astype(np.int64)]
    keys = np.unique(_pair_keys(lows, highs, n)[lows != highs])
    affinity = np.clip(rng.normal(0.3, 0.5, keys.size), -1.0, 1.0)
    return keys // n, keys % n, affinity


def _draw_deals(rng: np.random.Generator, config: EcosystemConfig, window: _Window) -> _DealDraws:
    """Creation time, region, segment, products (primary + co-occurring companions) and amount."""
    d, products = config.deals, len(schema.PRODUCTS)
    # Arrival density grows linearly by `growth` over the window; inverse-CDF sampling.
    growth = 0.3
    fraction = np.sort(rng.random(d))
    elapsed = (np.sqrt(1.0 + growth * (2.0 + growth) * fraction) - 1.0) / growth
    created_seconds = window.start_seconds + (elapsed * window.seconds).astype(np.int64)
    region = rng.choice(len(schema.REGIONS), size=d, p=REGION_WEIGHTS).astype(np.int64)
    segment = rng.choice(len(schema.SEGMENTS), size=d, p=SEGMENT_WEIGHTS).astype(np.int64)
    primary = rng.choice(products, size=d, p=PRODUCT_POPULARITY).astype(np.int64)
    families = _family_matrix().astype(np.float64)
    co_occurrence = 1.0 + 8.0 * ((families.T @ families) > 0)
    companion_weights = co_occurrence[primary] * np.array(PRODUCT_POPULARITY)
    companion_weights[np.arange(d), primary] = 0.0
    extra = rng.choice(3, size=d, p=(0.55, 0.30, 0.15))
    chosen = _weighted_subset(rng, companion_weights, extra)
    chosen[np.arange(d), primary] = True
    log_median = np.log(np.array(SEGMENT_MEDIAN_AMOUNT))[segment] + 0.35 * (chosen.sum(axis=1) - 1)
    amount = np.rint(np.exp(rng.normal(log_median, np.array(SEGMENT_AMOUNT_SIGMA)[segment])) / 100.0) * 100.0
    return _DealDraws(
        created_seconds=created_seconds,
        region=region,
        segment=segment,
        primary=primary,
        products=chosen,
        amount=np.maximum(amount, 1000.0),
    )


def _route_attempts(
    rng: np.random.Generator, config: EcosystemConfig, partners: _PartnerDraws, deals: _DealDraws
) -> tuple[IntArray, IntArray]:
    """Legacy routing: who worked each deal. Returns (deal index, partner position) per row,
    sorted by deal then draw order (the first row of a deal is its lead).

    Per (region, primary product) bucket the eligible partners, operating there, are sorted by
    joined_at; for a deal created at t the partners joined by t are a prefix, so one cumulative
    weight array per bucket serves all of its deals (searchsorted on scaled uniforms).
    """
    n, d = partners.joined_seconds.size, deals.created_seconds.size
    target = 1 + rng.poisson(config.attempts_per_deal - 1.0, size=d)
    draws_per_deal = 2 * target + 2  # spare draws absorb duplicates
    proxy = partners.product_skill + rng.normal(0.0, _ROUTING_PROXY_NOISE, partners.product_skill.shape)
    proxy_weight = np.exp(proxy + 0.3 * partners.tier[:, None])
    by_joined = np.argsort(partners.joined_seconds, kind="stable")
    bucket = deals.region * len(schema.PRODUCTS) + deals.primary
    deal_order = np.argsort(bucket, kind="stable")
    bucket_bounds = np.searchsorted(bucket[deal_order], np.arange(len(schema.REGIONS) * len(schema.PRODUCTS) + 1))
    drawn_deals, drawn_partners = [], []
    share = config.routing_skill_share
    for region in range(len(schema.REGIONS)):
        members = by_joined[partners.operating[by_joined, region]]
        if members.size == 0:
            continue
        member_joined = partners.joined_seconds[members]
        for product in range(len(schema.PRODUCTS)):
            code = region * len(schema.PRODUCTS) + product
            bucket_deals = deal_order[bucket_bounds[code] : bucket_bounds[code + 1]]
            eligible = np.searchsorted(member_joined, deals.created_seconds[bucket_deals], side="right")
            bucket_deals, eligible = bucket_deals[eligible > 0], eligible[eligible > 0]
            if bucket_deals.size == 0:
                continue
            weight = proxy_weight[members, product]
            cumulative = np.cumsum(share * weight / weight.mean() + (1.0 - share))
            repeats = draws_per_deal[bucket_deals]
            limit = np.repeat(eligible, repeats)
            picks = np.searchsorted(cumulative, rng.random(limit.size) * cumulative[limit - 1], side="right")
            drawn_deals.append(np.repeat(bucket_deals, repeats))
            drawn_partners.append(members[np.minimum(picks, limit - 1)])
    if not drawn_deals:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    deal_index, partner = np.concatenate(drawn_deals), np.concatenate(drawn_partners)
    _, first_draw = np.unique(deal_index * n + partner, return_index=True)
    first_draw.sort()  # back to draw order
    deal_index, partner = deal_index[first_draw], partner[first_draw]
    order = np.argsort(deal_index, kind="stable")
    deal_index, partner = deal_index[order], partner[order]
    group_start = np.searchsorted(deal_index, deal_index, side="left")
    keep = np.arange(deal_index.size) - group_start < target[deal_index]
    return deal_index[keep], partner[keep]


def _form_teams(
    rng: np.random.Generator,
    config: EcosystemConfig,
    partners: _PartnerDraws,
    deals: _DealDraws,
    affinity_pairs: tuple[IntArray, IntArray],
    deal_index: IntArray,
    partner: IntArray,
) -> _Attempts:
    """Turn a share of multi-product deals into co-sell pairs: the lead plus a known ally that
    operates in the region and has joined (added as a row if it had not worked the deal), else the
    deal's second attempter."""
    n, d = partners.joined_seconds.size, deals.created_seconds.size
    rows_per_deal = np.bincount(deal_index, minlength=d)
    first_row = np.concatenate(([0], np.cumsum(rows_per_deal)[:-1]))
    candidates = np.flatnonzero((deals.products.sum(axis=1) >= 2) & (rows_per_deal >= 1))
    team_deals = candidates[rng.random(candidates.size) < config.team_deal_share]
    lead = partner[first_row[team_deals]]

    lows, highs = affinity_pairs
    sources, targets = np.concatenate((lows, highs)), np.concatenate((highs, lows))
    by_source = np.argsort(sources, kind="stable")
    ally_count = np.bincount(sources, minlength=n)
    ally_start = np.concatenate(([0], np.cumsum(ally_count)[:-1]))
    pick = ally_start[lead] + (rng.random(lead.size) * ally_count[lead]).astype(np.int64)
    ally = np.full(lead.size, -1, dtype=np.int64)
    has_ally = ally_count[lead] > 0
    ally[has_ally] = targets[by_source][pick[has_ally]]
    usable = (
        (ally >= 0)
        & partners.operating[np.maximum(ally, 0), deals.region[team_deals]]
        & (partners.joined_seconds[np.maximum(ally, 0)] <= deals.created_seconds[team_deals])
        & (rng.random(lead.size) < _ALLY_PREFERENCE)
    )
    has_second = rows_per_deal[team_deals] >= 2
    second = np.where(has_second, partner[np.minimum(first_row[team_deals] + 1, max(partner.size - 1, 0))], -1)
    mate = np.where(usable, ally, second)
    formed = mate >= 0
    team_deals, lead_rows, mate = team_deals[formed], first_row[team_deals[formed]], mate[formed]

    team = np.full(deal_index.size, -1, dtype=np.int64)
    team_number = np.arange(team_deals.size, dtype=np.int64)
    team[lead_rows] = team_number
    row_keys = deal_index * n + partner
    key_order = np.argsort(row_keys)
    mate_keys = team_deals * n + mate
    slot = np.minimum(np.searchsorted(row_keys[key_order], mate_keys), max(row_keys.size - 1, 0))
    existing = row_keys[key_order][slot] == mate_keys
    team[key_order[slot[existing]]] = team_number[existing]
    # Allies that had not worked the deal join it as an extra row after the deal's other rows.
    deal_index = np.concatenate((deal_index, team_deals[~existing]))
    partner = np.concatenate((partner, mate[~existing]))
    team = np.concatenate((team, team_number[~existing]))
    order = np.argsort(deal_index, kind="stable")
    return _Attempts(deal=deal_index[order], partner=partner[order], team=team[order])


def _deals_table(
    text_rng: np.random.Generator,
    rng: np.random.Generator,
    config: EcosystemConfig,
    deal_ids: StrArray,
    partner_ids: StrArray,
    deals: _DealDraws,
    attempts: _Attempts,
) -> pd.DataFrame:
    """The deals table with requirement texts and deal registrations."""
    product_cells = _list_cells(deals.primary, deals.products, schema.PRODUCTS)
    regions = [schema.REGIONS[i] for i in deals.region.tolist()]
    segments = [schema.SEGMENTS[i] for i in deals.segment.tolist()]
    amounts = deals.amount.tolist()
    requirements = [
        text.deal_requirement_text(text_rng, schema.split_list(cell), segment, region, amount)
        for cell, segment, region, amount in zip(product_cells, segments, regions, amounts, strict=True)
    ]
    # Deal registration: one of the deal's attempting partners registered it.
    rows_per_deal = np.bincount(attempts.deal, minlength=deal_ids.size)
    first_row = np.concatenate(([0], np.cumsum(rows_per_deal)[:-1]))
    registered = (rng.random(deal_ids.size) < config.registration_share) & (rows_per_deal > 0)
    registrant_row = first_row + (rng.random(deal_ids.size) * rows_per_deal).astype(np.int64)
    registrants = np.full(deal_ids.size, "", dtype=partner_ids.dtype)
    registrants[registered] = partner_ids[attempts.partner[registrant_row[registered]]]
    return pd.DataFrame(
        {
            schema.DEAL_ID: deal_ids,
            schema.CREATED_AT: _timestamps(deals.created_seconds),
            schema.SEGMENT: segments,
            schema.DEAL_REGION: regions,
            schema.DEAL_PRODUCTS: product_cells,
            schema.REQUIREMENT_TEXT: requirements,
            schema.AMOUNT: deals.amount,
            schema.REGISTERED_PARTNER_ID: registrants,
        }
    )


def _activity_profile(episodes: _EpisodeIndex, positions: IntArray, seconds: IntArray) -> tuple[BoolArray, FloatArray]:
    """(inside an episode, run-up in [0, 1]: 0 until 60 days before the next episode, 1 at its start)."""
    inside = episodes.inside(positions, seconds)
    run_up = np.clip(1.0 - episodes.days_to_next_start(positions, seconds) / PRE_EPISODE_DAYS, 0.0, 1.0)
    return inside, run_up


def _active_spans(window: _Window, joined_seconds: IntArray) -> tuple[IntArray, IntArray]:
    """Per partner: first observable second (joined or window start) and span in seconds."""
    first = np.maximum(joined_seconds, window.start_seconds)
    return first, np.maximum(window.end_seconds - first, 0)


def _engagement_table(
    rng: np.random.Generator,
    config: EcosystemConfig,
    window: _Window,
    partner_ids: StrArray,
    partners: _PartnerDraws,
    episodes: _EpisodeIndex,
) -> pd.DataFrame:
    """Poisson events per partner-month by tier, thinned by disengagement (Lewis-Shedler)."""
    first, span = _active_spans(window, partners.joined_seconds)
    tier_rate = np.array(TIER_ENGAGEMENT)[partners.tier]
    rate = config.engagement_per_partner_month * tier_rate / tier_rate.mean()
    counts = rng.poisson(rate * span / (_DAYS_PER_MONTH * SECONDS_PER_DAY))
    positions = np.repeat(np.arange(partner_ids.size, dtype=np.int64), counts)
    seconds = first[positions] + (rng.random(positions.size) * span[positions]).astype(np.int64)
    inside, run_up = _activity_profile(episodes, positions, seconds)
    intensity = np.where(inside, _EPISODE_ACTIVITY, 1.0 - _PRE_EPISODE_ACTIVITY_DROP * run_up)
    keep = rng.random(positions.size) < intensity
    kinds = rng.choice(len(schema.ENGAGEMENT_KINDS), size=positions.size, p=ENGAGEMENT_KIND_WEIGHTS)
    order = np.lexsort((positions[keep], seconds[keep]))
    return pd.DataFrame(
        {
            schema.PARTNER_ID: partner_ids[positions[keep][order]],
            schema.OCCURRED_AT: _timestamps(seconds[keep][order]),
            schema.EVENT_KIND: np.array(schema.ENGAGEMENT_KINDS)[kinds[keep][order]],
        }
    )


def _communications_table(
    rng: np.random.Generator,
    text_rng: np.random.Generator,
    config: EcosystemConfig,
    window: _Window,
    partner_ids: StrArray,
    partners: _PartnerDraws,
    episodes: _EpisodeIndex,
) -> tuple[pd.DataFrame, FloatArray]:
    """Messages at a constant Poisson rate whose latent sentiment slides towards -0.6 in the run-up
    to and during episodes. Returns the table and the (messages,) sentiment in [-1, 1]."""
    first, span = _active_spans(window, partners.joined_seconds)
    counts = rng.poisson(config.messages_per_partner_month * span / (_DAYS_PER_MONTH * SECONDS_PER_DAY))
    positions = np.repeat(np.arange(partner_ids.size, dtype=np.int64), counts)
    seconds = first[positions] + (rng.random(positions.size) * span[positions]).astype(np.int64)
    order = np.lexsort((positions, seconds))
    positions, seconds = positions[order], seconds[order]
    mood = rng.normal(0.25, 0.25, partner_ids.size)
    inside, run_up = _activity_profile(episodes, positions, seconds)
    slide = np.where(inside, 1.0, 0.7 * run_up)
    level = mood[positions] + (_EPISODE_SENTIMENT - mood[positions]) * slide
    sentiment = np.clip(level + rng.normal(0.0, 0.25, positions.size), -1.0, 1.0)
    channels = np.array(schema.COMMUNICATION_CHANNELS)[
        rng.choice(len(schema.COMMUNICATION_CHANNELS), size=positions.size, p=CHANNEL_WEIGHTS)
    ]
    messages = [
        text.communication_text(text_rng, value, channel)
        for value, channel in zip(sentiment.tolist(), channels.tolist(), strict=True)
    ]
    table = pd.DataFrame(
        {
            schema.MESSAGE_ID: _ids("M", positions.size, 8),
            schema.PARTNER_ID: partner_ids[positions],
            schema.SENT_AT: _timestamps(seconds),
            schema.CHANNEL: channels,
            schema.MESSAGE_TEXT: messages,
        }
    )
    return table, sentiment


def generate_ecosystem(config: EcosystemConfig, progress: Progress = SILENT) -> tuple[schema.Ecosystem, GroundTruth]:
    """Generate the five ecosystem tables and their ground truth; deterministic for `config.seed`.

    Partners "P000001".., deals "D0000001".. in creation order, outcomes sorted by deal then
    routing order (the lead first), engagement and messages in time order. `progress` receives a
    short line per stage.
    """
    # Independent streams per stage: changing one stage's draws leaves the others' unchanged.
    (
        partner_rng,
        profile_rng,
        episode_rng,
        deal_rng,
        requirement_rng,
        routing_rng,
        outcome_rng,
        engagement_rng,
        message_rng,
        message_text_rng,
    ) = (np.random.default_rng(seed) for seed in np.random.SeedSequence(config.seed).spawn(10))
    start_seconds = int(np.datetime64(config.start, "s").astype(np.int64))
    window = _Window(start_seconds, start_seconds + config.days * SECONDS_PER_DAY)

    partner_ids = _ids("P", config.partners, 6)
    partner_draws = _draw_partners(partner_rng, config, window)
    partners = _partners_table(partner_rng, profile_rng, partner_ids, partner_draws)
    episode_positions, episode_starts, episode_ends = _draw_episodes(
        episode_rng, config, window, partner_draws.joined_seconds
    )
    ally_lows, ally_highs, ally_affinity = _draw_affinity(episode_rng, partner_draws.home)
    progress.step(f"partners: {config.partners}, disengagement episodes: {episode_positions.size}")

    deal_ids = _ids("D", config.deals, 7)
    deal_draws = _draw_deals(deal_rng, config, window)
    routed_deals, routed_partners = _route_attempts(routing_rng, config, partner_draws, deal_draws)
    attempts = _form_teams(
        routing_rng, config, partner_draws, deal_draws, (ally_lows, ally_highs), routed_deals, routed_partners
    )
    deals = _deals_table(requirement_rng, routing_rng, config, deal_ids, partner_ids, deal_draws, attempts)
    progress.step(
        f"deals: {config.deals}, attempts: {attempts.deal.size}, teams: {int(attempts.team.max(initial=-1)) + 1}"
    )

    draft = GroundTruth(
        partner_ids=partner_ids,
        product_skill=partner_draws.product_skill,
        region_skill=partner_draws.region_skill,
        certification_levels=partner_draws.certification_levels,
        true_capacity=partner_draws.true_capacity,
        size_sweet_spot=partner_draws.size_sweet_spot,
        affinity=pd.DataFrame(
            {PARTNER_A: partner_ids[ally_lows], PARTNER_B: partner_ids[ally_highs], AFFINITY: ally_affinity}
        ),
        disengagement=pd.DataFrame(
            {
                schema.PARTNER_ID: partner_ids[episode_positions],
                EPISODE_START: _timestamps(episode_starts),
                EPISODE_END: _timestamps(episode_ends),
            }
        ),
        coefficients=config.coefficients,
        outcome_probability=np.empty(0),
        message_sentiment=np.empty(0),
    )
    probability = _attempt_probability(
        draft,
        attempts.partner,
        deal_draws.created_seconds[attempts.deal],
        partner_draws.joined_seconds,
        attempts.partner,
        attempts.deal,
        deal_draws.created_seconds,
        deal_draws.products,
        deal_draws.region,
        deal_draws.amount,
        attempts.team,
    )
    draw = outcome_rng.random(attempts.deal.size)
    team_draw = outcome_rng.random(int(attempts.team.max(initial=-1)) + 1)
    in_team = attempts.team >= 0
    draw[in_team] = team_draw[attempts.team[in_team]]
    won = draw < probability
    # Sales cycles of 10-120 days, longer for larger deals; all rows of a deal close together.
    cycle_days = np.clip(
        np.exp(outcome_rng.normal(np.log(20.0) + 0.35 * np.log(deal_draws.amount / 1e4), 0.3)), 10.0, 120.0
    )
    closed_seconds = deal_draws.created_seconds + (cycle_days * SECONDS_PER_DAY).astype(np.int64)
    team_ids = np.concatenate(([""], _ids("T", team_draw.size, 7)))[attempts.team + 1]
    outcomes = pd.DataFrame(
        {
            schema.DEAL_ID: deal_ids[attempts.deal],
            schema.PARTNER_ID: partner_ids[attempts.partner],
            schema.WON: won,
            schema.CLOSED_AT: _timestamps(closed_seconds[attempts.deal]),
            schema.TEAM_ID: team_ids,
        }
    )
    progress.step(f"outcomes: {len(outcomes)}, win rate {won.mean() if won.size else float('nan'):.3f}")

    engagement = _engagement_table(engagement_rng, config, window, partner_ids, partner_draws, draft._episodes)
    communications, sentiment = _communications_table(
        message_rng, message_text_rng, config, window, partner_ids, partner_draws, draft._episodes
    )
    progress.step(f"engagement events: {len(engagement)}, messages: {len(communications)}")
    ecosystem = schema.Ecosystem(
        partners=partners, deals=deals, outcomes=outcomes, engagement=engagement, communications=communications
    )
    return ecosystem, replace(draft, outcome_probability=probability, message_sentiment=sentiment)
