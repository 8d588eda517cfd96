"""The generator of a synthetic partner ecosystem with known ground truth.

`generate_ecosystem(config)` returns the five tables of `features.schema` and a `GroundTruth`: the
latent partner skills, capacities, deal-size sweet spots, pair affinities and disengagement
episodes that produced the tables, and the true win probability of every historical attempt
(`features.synthetic.oracle` is the true model).

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
- Team deals (`EcosystemConfig.team_deals`, off by default): deals needing 2-7 products, worked by
  a team that legacy assembly put together requirement by requirement (skill proxy, allies and
  members already on the team preferred); one outcome row per member with `covers_product`, all
  sharing a `team_id` and one draw of `oracle.true_team_deal_probability`. They follow the regular
  deals in the deals table (ids continue) and in the outcomes table.
- During disengagement episodes partners win less, engage much less and write more negative
  messages. Disengagement fades in over months: message sentiment starts souring 3-6 months before
  an episode (a speed drawn per episode), engagement (logins, registrations, trainings) with it for
  about half the episodes and later for the rest, each slide scaled by a drawn strength (some
  partners give little warning). The drift is saved with the episodes in the ground truth.

All times are naive datetime64[ns] meaning UTC, in whole seconds (the dtype features.io reads back).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import numpy.typing as npt
import pandas as pd

from features import schema, text
from features.pairs import SECONDS_PER_DAY
from features.progress import SILENT, Progress
from features.synthetic.oracle import attempt_probability, load_events
from features.synthetic.truth import (
    AFFINITY,
    DRIFT_STRENGTH,
    ENGAGEMENT_ONSET_DAYS,
    EPISODE_END,
    EPISODE_START,
    NON_OPERATING_REGION_SKILL,
    PARTNER_A,
    PARTNER_B,
    SENTIMENT_ONSET_DAYS,
    BoolArray,
    EpisodeIndex,
    FloatArray,
    GroundTruth,
    IntArray,
    StrArray,
    TruthCoefficients,
    pair_keys,
)

# Bumped whenever the same EcosystemConfig draws different tables (caches of generated data key on it).
# 2: the drift before disengagement episodes fades in over 3-6 months, drawn per episode.
GENERATOR_VERSION = 2

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
_EPISODE_LEAD_IN_DAYS = 30  # no episode in a partner's first month, nor in the month after one
_DAYS_PER_MONTH = 30.0  # the "month" of the per-partner-month rates in EcosystemConfig
_EPISODE_ACTIVITY = 0.1  # engagement multiplier inside an episode
_PRE_EPISODE_ACTIVITY_DROP = 0.6  # at full strength the engagement multiplier falls linearly to 0.4 at episode start
_EPISODE_SENTIMENT = -0.6
_PRE_EPISODE_SENTIMENT_SLIDE = 0.7  # at full strength sentiment covers this share of the way to -0.6 by the start
# The drift before an episode, drawn per episode (uniform ranges): sentiment onset in days before the
# start; for a share of the episodes engagement lags, starting at a fraction of that onset; strength.
SENTIMENT_ONSET_RANGE_DAYS = (90.0, 180.0)
_ENGAGEMENT_LAG_SHARE = 0.5
_ENGAGEMENT_ONSET_FRACTION = (0.3, 0.8)
_DRIFT_STRENGTH_RANGE = (0.4, 1.0)
_ALLIES_PER_PARTNER = 1.5
_ALLY_PREFERENCE = 0.8  # a team lead takes a known ally when it can work the deal
_ROUTING_PROXY_NOISE = 0.8  # sd of the legacy router's error about a partner's product skill
_CAPACITY_HEADROOM = 2.0  # true capacity / mean routed load, before partner-level spread
_EXTRA_PRODUCT_WEIGHTS = (0.55, 0.30, 0.15)  # regular deals: 0-2 products beside the primary
_TEAM_EXTRA_PRODUCT_WEIGHTS = (0.0, 0.25, 0.25, 0.2, 0.15, 0.1, 0.05)  # team deals: 2-7 products
_TEAM_ALLY_BOOST = 4.0  # legacy team assembly: weight multiplier for allies of members already chosen
_TEAM_REUSE_BOOST = 2.0  # ... and for members already on the team (one member may cover several)


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
    team_deals: int = 0  # extra deals needing 2-7 products, each worked by a multi-partner team
    engagement_per_partner_month: float = 1.0  # baseline events per active partner and 30 days
    messages_per_partner_month: float = 0.25
    registration_share: float = 0.05  # deals registered by one of their attempting partners
    routing_skill_share: float = 0.6  # legacy routing weight that follows the skill proxy (rest uniform)
    disengagement_per_partner_year: float = 0.15  # episode rate
    coefficients: TruthCoefficients = field(default_factory=TruthCoefficients)

    @property
    def cache_key(self) -> str:
        """A directory name for data generated from this config: sizes and seed to read, and a digest
        of every field and GENERATOR_VERSION (configs differing only in, say, `days` do not collide)."""
        fields = json.dumps([GENERATOR_VERSION, asdict(self)], sort_keys=True).encode()
        return f"partners{self.partners}-deals{self.deals}-seed{self.seed}-{hashlib.sha1(fields).hexdigest()[:8]}"

    def __post_init__(self) -> None:
        if self.partners < 1 or self.deals < 0 or self.days < 1 or self.team_deals < 0:
            raise ValueError("partners >= 1, deals >= 0, team_deals >= 0 and days >= 1 are required")
        if self.attempts_per_deal < 1:
            raise ValueError(f"attempts_per_deal must be >= 1, got {self.attempts_per_deal}")
        for name in ("team_deal_share", "registration_share", "routing_skill_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


def _timestamps(seconds: IntArray) -> npt.NDArray[np.datetime64]:
    """Seconds since 1970 -> naive datetime64[ns], the dtype of the tables' time columns."""
    return seconds.astype("datetime64[s]").astype("datetime64[ns]")


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
    """Outcomes rows before their outcome: (rows,) deal index, partner position and team code; on
    team deals (rows, P) `covers`, the products each member covers."""

    deal: IntArray
    partner: IntArray
    team: IntArray
    covers: BoolArray | None = None


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
    load_window_days = schema.LOAD_WINDOW.total_seconds() / SECONDS_PER_DAY
    routed_per_window = config.deals * config.attempts_per_deal * load_window_days / max(active_days, 1.0)
    # Skilled partners get more deals from the router, and staff for it, but not fully.
    true_capacity = np.maximum(
        _CAPACITY_HEADROOM * routed_per_window * np.exp(0.3 * size + 0.3 * skill_z + rng.normal(0.0, 0.2, n)), 0.25
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
    lead_in = _EPISODE_LEAD_IN_DAYS * SECONDS_PER_DAY
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
    keys = np.unique(pair_keys(lows, highs, n)[lows != highs])
    affinity = np.clip(rng.normal(0.3, 0.5, keys.size), -1.0, 1.0)
    return keys // n, keys % n, affinity


def _draw_deals(
    rng: np.random.Generator, count: int, window: _Window, extra_product_weights: tuple[float, ...]
) -> _DealDraws:
    """Creation time, region, segment, products (primary + co-occurring companions, their number
    drawn from `extra_product_weights` over 0, 1, ...) and amount of `count` deals."""
    d, products = count, len(schema.PRODUCTS)
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
    extra = rng.choice(len(extra_product_weights), size=d, p=extra_product_weights)
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


def _form_team_deal_teams(
    rng: np.random.Generator,
    config: EcosystemConfig,
    partners: _PartnerDraws,
    deals: _DealDraws,
    affinity_pairs: tuple[IntArray, IntArray],
) -> _Attempts:
    """Legacy team assembly for team deals: requirement by requirement, one member among the
    partners operating in the deal's region and joined by then, weighted like legacy routing by a
    noisy skill proxy, with allies of chosen members and chosen members themselves preferred.
    Returns one row per (deal, member), deal indices local to `deals`, team code = deal index."""
    products = len(schema.PRODUCTS)
    proxy = partners.product_skill + rng.normal(0.0, _ROUTING_PROXY_NOISE, partners.product_skill.shape)
    share = config.routing_skill_share
    weight = np.exp(proxy + 0.3 * partners.tier[:, None])
    weight = share * weight / weight.mean(axis=0) + (1.0 - share)
    allies: dict[int, list[int]] = {}
    for low, high in zip(*(side.tolist() for side in affinity_pairs), strict=True):
        allies.setdefault(low, []).append(high)
        allies.setdefault(high, []).append(low)
    rows_deal: list[int] = []
    rows_partner: list[int] = []
    rows_covers: list[np.ndarray] = []
    for deal in range(deals.created_seconds.size):
        eligible = np.flatnonzero(
            partners.operating[:, deals.region[deal]] & (partners.joined_seconds <= deals.created_seconds[deal])
        )
        if eligible.size == 0:
            continue
        boost = np.ones(partners.joined_seconds.size)
        covers: dict[int, np.ndarray] = {}
        for product in np.flatnonzero(deals.products[deal]).tolist():
            chances = weight[eligible, product] * boost[eligible]
            member = int(eligible[np.searchsorted(np.cumsum(chances), rng.random() * chances.sum(), side="right")])
            if member not in covers:
                covers[member] = np.zeros(products, dtype=bool)
                boost[allies.get(member, [])] *= _TEAM_ALLY_BOOST
                boost[member] = _TEAM_REUSE_BOOST
            covers[member][product] = True
        for member, mask in covers.items():
            rows_deal.append(deal)
            rows_partner.append(member)
            rows_covers.append(mask)
    deal_index = np.array(rows_deal, dtype=np.int64)
    return _Attempts(
        deal=deal_index,
        partner=np.array(rows_partner, dtype=np.int64),
        team=deal_index.copy(),
        covers=np.array(rows_covers, dtype=bool).reshape(-1, products),
    )


def _concatenate_deals(first: _DealDraws, second: _DealDraws) -> _DealDraws:
    return _DealDraws(
        **{
            name: np.concatenate((getattr(first, name), getattr(second, name)))
            for name in _DealDraws.__dataclass_fields__
        }
    )


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


@dataclass(frozen=True)
class _Drift:
    """The episodes and the drift before each: (e,) float64 onsets in days and strengths in (0, 1],
    aligned with the episodes' rows."""

    episodes: EpisodeIndex
    sentiment_onset_days: FloatArray
    engagement_onset_days: FloatArray
    strength: FloatArray

    def profile(self, positions: IntArray, seconds: IntArray, onset_days: FloatArray) -> tuple[BoolArray, FloatArray]:
        """(inside an episode, run-up in [0, 1]: 0 until the next episode's onset, then rising
        linearly to its strength at the start) for events of partners `positions` at `seconds`."""
        inside = self.episodes.inside(positions, seconds)
        row, days = self.episodes.next_start(positions, seconds)
        has_next = row >= 0
        safe = np.maximum(row, 0)
        progress = np.clip(1.0 - days / np.where(has_next, onset_days[safe], 1.0), 0.0, 1.0)
        return inside, np.where(has_next, self.strength[safe] * progress, 0.0)


def _draw_drift(rng: np.random.Generator, episodes: EpisodeIndex) -> _Drift:
    """The drift before each episode (module docstring)."""
    count = episodes.positions.size
    sentiment_onset = rng.uniform(*SENTIMENT_ONSET_RANGE_DAYS, count)
    lags = rng.random(count) < _ENGAGEMENT_LAG_SHARE
    engagement_onset = sentiment_onset * np.where(lags, rng.uniform(*_ENGAGEMENT_ONSET_FRACTION, count), 1.0)
    return _Drift(episodes, sentiment_onset, engagement_onset, rng.uniform(*_DRIFT_STRENGTH_RANGE, count))


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
    drift: _Drift,
) -> pd.DataFrame:
    """Poisson events per partner-month by tier, thinned by disengagement (Lewis-Shedler)."""
    first, span = _active_spans(window, partners.joined_seconds)
    tier_rate = np.array(TIER_ENGAGEMENT)[partners.tier]
    rate = config.engagement_per_partner_month * tier_rate / tier_rate.mean()
    counts = rng.poisson(rate * span / (_DAYS_PER_MONTH * SECONDS_PER_DAY))
    positions = np.repeat(np.arange(partner_ids.size, dtype=np.int64), counts)
    seconds = first[positions] + (rng.random(positions.size) * span[positions]).astype(np.int64)
    inside, run_up = drift.profile(positions, seconds, drift.engagement_onset_days)
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
    drift: _Drift,
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
    inside, run_up = drift.profile(positions, seconds, drift.sentiment_onset_days)
    slide = np.where(inside, 1.0, _PRE_EPISODE_SENTIMENT_SLIDE * run_up)
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
        team_rng,  # team deals: their draws never touch the other streams
        drift_rng,  # the drift before episodes; spawned last, so the streams above are unchanged
    ) = (np.random.default_rng(seed) for seed in np.random.SeedSequence(config.seed).spawn(12))
    start_seconds = int(np.datetime64(config.start, "s").astype(np.int64))
    window = _Window(start_seconds, start_seconds + config.days * SECONDS_PER_DAY)

    partner_ids = _ids("P", config.partners, 6)
    partner_draws = _draw_partners(partner_rng, config, window)
    partners = _partners_table(partner_rng, profile_rng, partner_ids, partner_draws)
    episode_positions, episode_starts, episode_ends = _draw_episodes(
        episode_rng, config, window, partner_draws.joined_seconds
    )
    ally_lows, ally_highs, ally_affinity = _draw_affinity(episode_rng, partner_draws.home)
    drift = _draw_drift(drift_rng, EpisodeIndex(episode_positions, episode_starts, episode_ends))
    progress.step(f"partners: {config.partners}, disengagement episodes: {episode_positions.size}")

    deal_ids = _ids("D", config.deals, 7)
    deal_draws = _draw_deals(deal_rng, config.deals, window, _EXTRA_PRODUCT_WEIGHTS)
    routed_deals, routed_partners = _route_attempts(routing_rng, config, partner_draws, deal_draws)
    attempts = _form_teams(
        routing_rng, config, partner_draws, deal_draws, (ally_lows, ally_highs), routed_deals, routed_partners
    )
    deals = _deals_table(requirement_rng, routing_rng, config, deal_ids, partner_ids, deal_draws, attempts)
    progress.step(
        f"deals: {config.deals}, attempts: {attempts.deal.size}, teams: {int(attempts.team.max(initial=-1)) + 1}"
    )
    pair_teams = int(attempts.team.max(initial=-1)) + 1
    regular_rows, regular_deals = attempts.deal.size, config.deals
    if config.team_deals:
        team_draws = _draw_deals(team_rng, config.team_deals, window, _TEAM_EXTRA_PRODUCT_WEIGHTS)
        team_attempts = _form_team_deal_teams(team_rng, config, partner_draws, team_draws, (ally_lows, ally_highs))
        team_deal_ids = np.array(
            [f"D{number:07d}" for number in range(config.deals + 1, config.deals + config.team_deals + 1)]
        )
        team_deals_table = _deals_table(
            team_rng,
            team_rng,
            replace(config, registration_share=0.0),
            team_deal_ids,
            partner_ids,
            team_draws,
            team_attempts,
        )
        deals = pd.concat([deals, team_deals_table], ignore_index=True)
        deal_ids = np.concatenate((deal_ids, team_deal_ids))
        deal_draws = _concatenate_deals(deal_draws, team_draws)
        assert team_attempts.covers is not None
        attempts = _Attempts(
            deal=np.concatenate((attempts.deal, team_attempts.deal + regular_deals)),
            partner=np.concatenate((attempts.partner, team_attempts.partner)),
            team=np.concatenate((attempts.team, team_attempts.team + pair_teams)),
            covers=np.concatenate((np.zeros((regular_rows, len(schema.PRODUCTS)), dtype=bool), team_attempts.covers)),
        )
        progress.step(f"team deals: {config.team_deals}, member rows: {team_attempts.deal.size}")

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
                SENTIMENT_ONSET_DAYS: drift.sentiment_onset_days,
                ENGAGEMENT_ONSET_DAYS: drift.engagement_onset_days,
                DRIFT_STRENGTH: drift.strength,
            }
        ),
        coefficients=config.coefficients,
        outcome_probability=np.empty(0),
        message_sentiment=np.empty(0),
    )
    probability = attempt_probability(
        draft,
        load_events(attempts.partner, deal_draws.created_seconds[attempts.deal]),
        partner_draws.joined_seconds,
        attempts.partner,
        attempts.deal,
        deal_draws.created_seconds,
        deal_draws.products,
        deal_draws.region,
        deal_draws.amount,
        attempts.team,
        attempts.covers,
    )
    draw = outcome_rng.random(regular_rows)
    team_draw = outcome_rng.random(pair_teams)
    # Team deals draw from their own stream, after the regular draws (which stay as they were).
    team_draw = np.concatenate((team_draw, team_rng.random(config.team_deals)))
    draw = np.concatenate((draw, np.zeros(attempts.deal.size - regular_rows)))
    in_team = attempts.team >= 0
    draw[in_team] = team_draw[attempts.team[in_team]]
    won = draw < probability
    # Sales cycles of 10-120 days, longer for larger deals; all rows of a deal close together.
    log_cycle = np.log(20.0) + 0.35 * np.log(deal_draws.amount / 1e4)
    cycle_days = np.clip(
        np.exp(
            np.concatenate(
                (
                    outcome_rng.normal(log_cycle[:regular_deals], 0.3),
                    team_rng.normal(log_cycle[regular_deals:], 0.3),
                )
            )
        ),
        10.0,
        120.0,
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
    if attempts.covers is not None:
        outcomes[schema.COVERS_PRODUCT] = [
            schema.join_list([schema.PRODUCTS[p] for p in np.flatnonzero(mask)]) for mask in attempts.covers
        ]
    progress.step(f"outcomes: {len(outcomes)}, win rate {won.mean() if won.size else float('nan'):.3f}")

    engagement = _engagement_table(engagement_rng, config, window, partner_ids, partner_draws, drift)
    communications, sentiment = _communications_table(
        message_rng, message_text_rng, config, window, partner_ids, partner_draws, drift
    )
    progress.step(f"engagement events: {len(engagement)}, messages: {len(communications)}")
    ecosystem = schema.Ecosystem(
        partners=partners, deals=deals, outcomes=outcomes, engagement=engagement, communications=communications
    )
    return ecosystem, replace(draft, outcome_probability=probability, message_sentiment=sentiment)
