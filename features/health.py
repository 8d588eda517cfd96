"""Point-in-time partner health features: engagement, sentiment, pipeline and win-rate trends as of a date.

One row per (partner, as-of time). Every feature counts only events strictly before the as-of time
(engagement `occurred_at`, message `sent_at`, attempt deal `created_at`, outcome `closed_at`), so a
row never sees its future; `tests/features/test_health.py` rewrites everything after the as-of time
to prove it. The same function builds training rows (many as-of times per partner) and the current
snapshot (one as-of time: the end of the data).

Trends compare a recent window with the window just before it, per 30 days:
`log((recent + 0.5) / (baseline + 0.5))`, both counts scaled to 30 days (0: unchanged, < 0: decline).
Engagement and sentiment have a short and a long window each: disengagement fades in over months,
and sentiment often sours before engagement falls.
Message scores come from outside (the sentiment model's polarity p(positive) - p(negative) in
[-1, 1] and frustration in [0, 1], one per communications row): features import no model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import schema
from features.pairs import SECONDS_PER_DAY, EventIndex, event_keys, positions, to_seconds
from features.performance import PRIOR_STRENGTH, attempts_table

# Windows in days: recent activity, and the baseline window right before it.
ENGAGEMENT_RECENT_DAYS = 30
ENGAGEMENT_BASELINE_DAYS = 365  # the partner's own usual rate: a long window, little noise
ENGAGEMENT_LONG_DAYS = 90  # the long recent window, against the same baseline length before it
SENTIMENT_RECENT_DAYS = 60
SENTIMENT_BASELINE_DAYS = 180
SENTIMENT_LONG_DAYS = 120  # the long recent window ...
SENTIMENT_LONG_BASELINE_DAYS = 365  # ... against the year before it
PIPELINE_RECENT_DAYS = 90
PIPELINE_BASELINE_DAYS = 180
WIN_RATE_RECENT_DAYS = 180
WIN_RATE_BASELINE_DAYS = 365
DAYS_SINCE_CAP = 365.0  # "no engagement for a year or ever" reads the same
TREND_PSEUDO_COUNT = 0.5  # per 30 days, keeps log ratios of small counts finite
MONTH_DAYS = 30.0

# Feature columns (all in the snapshot; the disengagement model reads DISENGAGEMENT_FEATURES).
ENGAGEMENT_30D = "engagement_30d"
ENGAGEMENT_TREND = "engagement_trend"
ENGAGEMENT_TREND_LONG = "engagement_trend_90d"
LOGINS_TREND = "logins_trend"
DEAL_REGISTRATIONS_90D = "deal_registrations_90d"
TRAININGS_90D = "trainings_90d"
DAYS_SINCE_ENGAGEMENT = "days_since_engagement"
SENTIMENT_RECENT = "sentiment_recent"  # mean polarity in [-1, 1]; NaN without messages
SENTIMENT_TREND = "sentiment_trend"  # recent minus baseline mean polarity; NaN when either is empty
SENTIMENT_TREND_LONG = "sentiment_trend_120d"  # the same over the long windows
FRUSTRATION_RECENT = "frustration_recent"  # mean frustration in [0, 1]; NaN without messages
MESSAGES_RECENT = "messages_recent"
PIPELINE_90D = "pipeline_90d"  # attempts on deals created in the last 90 days
PIPELINE_TREND = "pipeline_trend"
WIN_RATE_RECENT = "win_rate_recent"  # smoothed towards the partner's own earlier rate
WIN_RATE_TREND = "win_rate_trend"  # recent minus baseline smoothed win rate
TENURE_DAYS = "tenure_days"
TIER_LEVEL = "tier_level"
HEALTH_FEATURES: tuple[str, ...] = (
    ENGAGEMENT_30D,
    ENGAGEMENT_TREND,
    ENGAGEMENT_TREND_LONG,
    LOGINS_TREND,
    DEAL_REGISTRATIONS_90D,
    TRAININGS_90D,
    DAYS_SINCE_ENGAGEMENT,
    SENTIMENT_RECENT,
    SENTIMENT_TREND,
    SENTIMENT_TREND_LONG,
    FRUSTRATION_RECENT,
    MESSAGES_RECENT,
    PIPELINE_90D,
    PIPELINE_TREND,
    WIN_RATE_RECENT,
    WIN_RATE_TREND,
    TENURE_DAYS,
    TIER_LEVEL,
)
# The disengagement model's inputs and the sign each must keep (-1: a higher value never raises the
# risk). Trends only: levels that identify a partner (tenure, tier, win rate, pipeline and message
# volume) let the trees memorise which training partners had episodes (measured on 2,000 partners:
# training ROC-AUC 0.71, held-out 0.54 with them; 0.61 / 0.56 without, at the engagement rule's 0.58).
DISENGAGEMENT_MONOTONE: dict[str, int] = {
    ENGAGEMENT_30D: -1,
    ENGAGEMENT_TREND: -1,
    ENGAGEMENT_TREND_LONG: -1,
    LOGINS_TREND: -1,
    DAYS_SINCE_ENGAGEMENT: 1,
    SENTIMENT_RECENT: -1,
    SENTIMENT_TREND: -1,
    SENTIMENT_TREND_LONG: -1,
    FRUSTRATION_RECENT: 1,
    PIPELINE_TREND: -1,
    WIN_RATE_TREND: -1,
}
DISENGAGEMENT_FEATURES: tuple[str, ...] = tuple(DISENGAGEMENT_MONOTONE)
# How each feature reads in a reason: (when it raises the disengagement risk, when it lowers it).
HEALTH_REASONS: dict[str, tuple[str, str]] = {
    ENGAGEMENT_30D: ("little engagement in the last 30 days", "active in the last 30 days"),
    ENGAGEMENT_TREND: ("engagement is falling", "engagement is steady or rising"),
    ENGAGEMENT_TREND_LONG: ("engagement has been falling for months", "engagement steady over months"),
    LOGINS_TREND: ("fewer portal logins than before", "portal logins steady or rising"),
    DEAL_REGISTRATIONS_90D: ("few deal registrations lately", "registers deals"),
    TRAININGS_90D: ("no recent trainings", "completes trainings"),
    DAYS_SINCE_ENGAGEMENT: ("long since the last engagement", "engaged recently"),
    SENTIMENT_RECENT: ("recent messages are negative", "recent messages are positive"),
    SENTIMENT_TREND: ("message sentiment is worsening", "message sentiment is steady or improving"),
    SENTIMENT_TREND_LONG: ("message sentiment has been souring for months", "message sentiment steady over months"),
    FRUSTRATION_RECENT: ("recent messages show frustration", "little frustration in messages"),
    MESSAGES_RECENT: ("message volume points to risk", "message volume points to engagement"),
    PIPELINE_90D: ("thin recent pipeline", "healthy recent pipeline"),
    PIPELINE_TREND: ("pipeline is shrinking", "pipeline is steady or growing"),
    WIN_RATE_RECENT: ("low recent win rate", "good recent win rate"),
    WIN_RATE_TREND: ("win rate is falling", "win rate is steady or rising"),
    TENURE_DAYS: ("tenure points to risk", "tenure points to stability"),
    TIER_LEVEL: ("tier points to risk", "tier points to stability"),
}


AS_OF = "as_of"  # column of the query rows: the time the features describe (naive UTC)


@dataclass(frozen=True)
class MessageScores:
    """Sentiment model outputs for the communications rows, in table order: (m,) float64 each."""

    polarity: np.ndarray  # p(positive) - p(negative), in [-1, 1]
    frustration: np.ndarray  # in [0, 1]


def as_of_rows(partner_ids: Sequence[str] | np.ndarray, as_of: pd.Timestamp | Sequence[pd.Timestamp]) -> pd.DataFrame:
    """Query rows: every partner at every as-of time (PARTNER_ID, "as_of")."""
    times = pd.DatetimeIndex([as_of] if isinstance(as_of, pd.Timestamp) else list(as_of))
    ids = np.asarray(partner_ids, dtype=object)
    return pd.DataFrame({schema.PARTNER_ID: np.tile(ids, len(times)), AS_OF: np.repeat(times.to_numpy(), ids.size)})


def _window_sum(
    index: EventIndex, keys: np.ndarray, seconds: np.ndarray, start_days: float, end_days: float
) -> np.ndarray:
    """(q, columns) sums of events in [t - end_days, t - start_days) before each query time t."""
    later = index.sum_before(keys, seconds - int(start_days * SECONDS_PER_DAY))
    earlier = index.sum_before(keys, seconds - int(end_days * SECONDS_PER_DAY))
    result: np.ndarray = later - earlier
    return result


def _trend(recent: np.ndarray, recent_days: float, baseline: np.ndarray, baseline_days: float) -> np.ndarray:
    """log of the ratio of monthly rates, with TREND_PSEUDO_COUNT per month in each."""
    recent_rate = recent * MONTH_DAYS / recent_days + TREND_PSEUDO_COUNT
    baseline_rate = baseline * MONTH_DAYS / baseline_days + TREND_PSEUDO_COUNT
    return np.asarray(np.log(recent_rate / baseline_rate))


def _mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _engagement_features(
    ecosystem: schema.Ecosystem, vocabulary: pd.Index, keys: np.ndarray, seconds: np.ndarray
) -> dict[str, np.ndarray]:
    events = ecosystem.engagement
    kinds = events[schema.EVENT_KIND].to_numpy()
    values = np.column_stack(
        [
            np.ones(len(events)),
            kinds == "portal_login",
            kinds == "deal_registered",
            kinds == "training_completed",
        ]
    ).astype(np.float64)
    event_seconds = to_seconds(events[schema.OCCURRED_AT])
    index = EventIndex.build(positions(events[schema.PARTNER_ID], vocabulary, schema.PARTNER_ID), event_seconds, values)
    recent = _window_sum(index, keys, seconds, 0, ENGAGEMENT_RECENT_DAYS)
    baseline = _window_sum(
        index, keys, seconds, ENGAGEMENT_RECENT_DAYS, ENGAGEMENT_RECENT_DAYS + ENGAGEMENT_BASELINE_DAYS
    )
    last_90 = _window_sum(index, keys, seconds, 0, ENGAGEMENT_LONG_DAYS)  # also the *_90d counts
    long_baseline = _window_sum(
        index, keys, seconds, ENGAGEMENT_LONG_DAYS, ENGAGEMENT_LONG_DAYS + ENGAGEMENT_BASELINE_DAYS
    )
    return {
        ENGAGEMENT_30D: recent[:, 0],
        ENGAGEMENT_TREND: _trend(recent[:, 0], ENGAGEMENT_RECENT_DAYS, baseline[:, 0], ENGAGEMENT_BASELINE_DAYS),
        ENGAGEMENT_TREND_LONG: _trend(
            last_90[:, 0], ENGAGEMENT_LONG_DAYS, long_baseline[:, 0], ENGAGEMENT_BASELINE_DAYS
        ),
        LOGINS_TREND: _trend(recent[:, 1], ENGAGEMENT_RECENT_DAYS, baseline[:, 1], ENGAGEMENT_BASELINE_DAYS),
        DEAL_REGISTRATIONS_90D: last_90[:, 2],
        TRAININGS_90D: last_90[:, 3],
        DAYS_SINCE_ENGAGEMENT: _days_since_last(index, keys, seconds),
    }


def _days_since_last(index: EventIndex, keys: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """Days from each partner's last event before t to t, capped at DAYS_SINCE_CAP."""
    key_starts = event_keys(keys, 0)
    first = np.searchsorted(index.composite, key_starts, side="left")
    before = np.searchsorted(index.composite, event_keys(keys, seconds), side="left")
    has_event = before > first
    last_seconds = index.composite[np.maximum(before - 1, 0)] - key_starts  # meaningful where has_event
    days = np.where(has_event, (seconds - last_seconds) / SECONDS_PER_DAY, DAYS_SINCE_CAP)
    return np.minimum(days, DAYS_SINCE_CAP)


def _sentiment_features(
    ecosystem: schema.Ecosystem, scores: MessageScores, vocabulary: pd.Index, keys: np.ndarray, seconds: np.ndarray
) -> dict[str, np.ndarray]:
    messages = ecosystem.communications
    if len(scores.polarity) != len(messages):
        raise ValueError(f"{len(scores.polarity)} message scores for {len(messages)} communications rows")
    values = np.column_stack([np.ones(len(messages)), scores.polarity, scores.frustration]).astype(np.float64)
    index = EventIndex.build(
        positions(messages[schema.PARTNER_ID], vocabulary, schema.PARTNER_ID),
        to_seconds(messages[schema.SENT_AT]),
        values,
    )
    recent = _window_sum(index, keys, seconds, 0, SENTIMENT_RECENT_DAYS)
    baseline = _window_sum(index, keys, seconds, SENTIMENT_RECENT_DAYS, SENTIMENT_RECENT_DAYS + SENTIMENT_BASELINE_DAYS)
    recent_polarity = _mean(recent[:, 1], recent[:, 0])
    long_recent = _window_sum(index, keys, seconds, 0, SENTIMENT_LONG_DAYS)
    long_baseline = _window_sum(
        index, keys, seconds, SENTIMENT_LONG_DAYS, SENTIMENT_LONG_DAYS + SENTIMENT_LONG_BASELINE_DAYS
    )
    return {
        SENTIMENT_RECENT: recent_polarity,
        SENTIMENT_TREND: recent_polarity - _mean(baseline[:, 1], baseline[:, 0]),
        SENTIMENT_TREND_LONG: _mean(long_recent[:, 1], long_recent[:, 0])
        - _mean(long_baseline[:, 1], long_baseline[:, 0]),
        FRUSTRATION_RECENT: _mean(recent[:, 2], recent[:, 0]),
        MESSAGES_RECENT: recent[:, 0],
    }


def _pipeline_features(
    ecosystem: schema.Ecosystem, vocabulary: pd.Index, keys: np.ndarray, seconds: np.ndarray
) -> dict[str, np.ndarray]:
    attempts = attempts_table(ecosystem)
    partner_keys = positions(attempts[schema.PARTNER_ID], vocabulary, schema.PARTNER_ID)
    # Pipeline: attempts dated by their deal's creation. Win rate: outcomes dated by their close.
    created = EventIndex.build(partner_keys, to_seconds(attempts[schema.CREATED_AT]), np.ones(len(attempts)))
    recent = _window_sum(created, keys, seconds, 0, PIPELINE_RECENT_DAYS)[:, 0]
    baseline = _window_sum(created, keys, seconds, PIPELINE_RECENT_DAYS, PIPELINE_RECENT_DAYS + PIPELINE_BASELINE_DAYS)[
        :, 0
    ]
    won = attempts[schema.WON].to_numpy(dtype=np.float64)
    closed = EventIndex.build(
        partner_keys, to_seconds(attempts[schema.CLOSED_AT]), np.column_stack([np.ones(len(attempts)), won])
    )
    recent_closed = _window_sum(closed, keys, seconds, 0, WIN_RATE_RECENT_DAYS)
    baseline_closed = _window_sum(
        closed, keys, seconds, WIN_RATE_RECENT_DAYS, WIN_RATE_RECENT_DAYS + WIN_RATE_BASELINE_DAYS
    )
    # The ecosystem-wide rate before each as-of time (not over all rows: that would leak the future).
    everyone = EventIndex.build(
        np.zeros(len(attempts), dtype=np.int64),
        to_seconds(attempts[schema.CLOSED_AT]),
        np.column_stack([np.ones(len(attempts)), won]),
    )
    market_counts = everyone.sum_before(np.zeros(keys.size, dtype=np.int64), seconds)
    market = market_counts[:, 1] / np.maximum(market_counts[:, 0], 1.0)
    baseline_rate = (baseline_closed[:, 1] + PRIOR_STRENGTH * market) / (baseline_closed[:, 0] + PRIOR_STRENGTH)
    # The recent rate shrinks towards the partner's own baseline: few recent closes say "no change".
    recent_rate = (recent_closed[:, 1] + PRIOR_STRENGTH * baseline_rate) / (recent_closed[:, 0] + PRIOR_STRENGTH)
    return {
        PIPELINE_90D: recent,
        PIPELINE_TREND: _trend(recent, PIPELINE_RECENT_DAYS, baseline, PIPELINE_BASELINE_DAYS),
        WIN_RATE_RECENT: recent_rate,
        WIN_RATE_TREND: recent_rate - baseline_rate,
    }


def health_features(ecosystem: schema.Ecosystem, scores: MessageScores, rows: pd.DataFrame) -> pd.DataFrame:
    """HEALTH_FEATURES (float64 columns, NaN where a mean has no events) for `rows` (PARTNER_ID,
    AS_OF), in row order; events at or after a row's AS_OF never count. Raises FeatureError for a
    partner id the partners table does not have."""
    partners = ecosystem.partners
    vocabulary = pd.Index(partners[schema.PARTNER_ID])
    keys = positions(rows[schema.PARTNER_ID], vocabulary, schema.PARTNER_ID)
    seconds = to_seconds(rows[AS_OF])
    joined = to_seconds(partners[schema.JOINED_AT])[keys]
    tiers = (
        partners[schema.TIER].map({tier: level for level, tier in enumerate(schema.TIERS)}).to_numpy(dtype=np.float64)
    )
    columns = (
        _engagement_features(ecosystem, vocabulary, keys, seconds)
        | _sentiment_features(ecosystem, scores, vocabulary, keys, seconds)
        | _pipeline_features(ecosystem, vocabulary, keys, seconds)
        | {TENURE_DAYS: np.maximum(seconds - joined, 0) / SECONDS_PER_DAY, TIER_LEVEL: tiers[keys]}
    )
    return pd.DataFrame(
        {name: np.asarray(columns[name], dtype=np.float64) for name in HEALTH_FEATURES}, index=rows.index
    )
