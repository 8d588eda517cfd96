"""Partner programme KPIs: pure functions over the ecosystem tables.

- Time to competency: days from signing (`joined_at`) to the close of the first won deal, for
  partners signed inside the history (earlier ones are left-truncated: their start is unseen);
  partners without a win yet are right-censored at the end of the outcomes. Cohorts (join quarter)
  and factors are summarised by Kaplan-Meier medians, which count censored partners correctly (a
  plain median of the partners who already won would flatter recent cohorts).
- What slows it: per factor (tier, home region, capacity band, certification band), the KM median
  of each level; factors are ranked by the spread between their slowest and fastest level.
  Stratified medians, not a regression: no adjustment for factors moving together.
- Win rate, pipeline and revenue by tier over the last `KPI_WINDOW_DAYS`.
- Tier recommendation: `promote` when a partner's revenue and win rate both reach the median of the
  tier above; `review` when both are below the 25th percentile of its own tier; else `keep`.
  Thresholds are the tier distributions of the same window (tiers with fewer than
  `MIN_TIER_PARTNERS` partners set no threshold).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features import schema
from features.performance import (
    DAYS_TO_FIRST_WIN,
    FIRST_WIN_SEEN,
    REVENUE,
    SIGNED_IN_HISTORY,
    attempts_table,
    first_year_performance,
    smoothed_rate,
)

KPI_WINDOW_DAYS = 365
MIN_TIER_PARTNERS = 5
PROMOTE_QUANTILE = 0.5  # of the tier above
REVIEW_QUANTILE = 0.25  # of the partner's own tier
CAPACITY_BANDS = (0, 3, 6, 10, np.inf)  # declared deals per 30 days
CERTIFICATION_BANDS = (0, 1, 3, 6, np.inf)  # certified products

# Columns of the KPI tables.
COHORT = "cohort"  # join quarter, e.g. "2023Q2"
OBSERVABLE = "observable"  # signed inside the history: time to competency can be measured
ATTEMPTS_WINDOW = "attempts_365d"
WINS_WINDOW = "wins_365d"
WIN_RATE_WINDOW = "win_rate_365d"  # smoothed towards the ecosystem rate
PIPELINE_WINDOW = "pipeline_amount_365d"  # USD of the deals the partner worked
REVENUE_WINDOW = "revenue_365d"  # USD won (team wins split)
RECOMMENDATION = "recommendation"
RECOMMENDATIONS = ("promote", "keep", "review")
FACTOR_LEVEL = "level"


def kaplan_meier_median(days: np.ndarray, event: np.ndarray) -> float:
    """Median of the Kaplan-Meier survival curve of (n,) durations with (n,) event flags (False:
    censored); NaN when the curve never falls to 0.5 or there are no rows."""
    if days.size == 0:
        return float("nan")
    times = np.unique(days[event])
    survival = 1.0
    for time in times:
        at_risk = np.sum(days >= time)
        survival *= 1.0 - np.sum((days == time) & event) / at_risk
        if survival <= 0.5:
            return float(time)
    return float("nan")


def time_to_competency(ecosystem: schema.Ecosystem) -> pd.DataFrame:
    """Per partner (partners-table order): PARTNER_ID, COHORT, OBSERVABLE, DAYS_TO_FIRST_WIN (days
    >= 0: to the first won deal's close, else to the end of observation) and FIRST_WIN_SEEN."""
    performance = first_year_performance(ecosystem)
    joined = pd.to_datetime(ecosystem.partners[schema.JOINED_AT]).reset_index(drop=True)
    return pd.DataFrame(
        {
            schema.PARTNER_ID: performance[schema.PARTNER_ID].to_numpy(),
            COHORT: joined.dt.to_period("Q").astype(str).to_numpy(),
            OBSERVABLE: performance[SIGNED_IN_HISTORY].to_numpy(),
            DAYS_TO_FIRST_WIN: performance[DAYS_TO_FIRST_WIN].to_numpy(),
            FIRST_WIN_SEEN: performance[FIRST_WIN_SEEN].to_numpy(),
        }
    )


def median_by(competency: pd.DataFrame, levels: pd.Series) -> pd.DataFrame:
    """Kaplan-Meier median days to competency per level of `levels` (aligned with `competency`),
    over observable partners: FACTOR_LEVEL, "partners", "first_wins", "median_days" (NaN: not reached)."""
    observable = competency[OBSERVABLE].to_numpy()
    frame = pd.DataFrame(
        {
            FACTOR_LEVEL: np.asarray(levels)[observable],
            "days": competency[DAYS_TO_FIRST_WIN].to_numpy()[observable],
            "event": competency[FIRST_WIN_SEEN].to_numpy()[observable],
        }
    )
    rows = [
        {
            FACTOR_LEVEL: str(level),
            "partners": len(group),
            "first_wins": int(group["event"].sum()),
            "median_days": kaplan_meier_median(group["days"].to_numpy(), group["event"].to_numpy(dtype=bool)),
        }
        for level, group in frame.groupby(FACTOR_LEVEL, sort=True)
    ]
    return pd.DataFrame(rows, columns=[FACTOR_LEVEL, "partners", "first_wins", "median_days"])


def competency_factors(ecosystem: schema.Ecosystem, competency: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """`median_by` for each factor a programme manager can act on or plan for, keyed by factor name."""
    partners = ecosystem.partners.reset_index(drop=True)
    certified = partners[schema.CERTIFICATIONS].fillna("").map(lambda cell: len(schema.parse_certifications(cell)))
    return {
        "tier": median_by(competency, partners[schema.TIER]),
        "home_region": median_by(competency, partners[schema.HOME_REGION]),
        "capacity_band": median_by(
            competency, pd.cut(partners[schema.CAPACITY], CAPACITY_BANDS, right=False).astype(str)
        ),
        "certification_band": median_by(competency, pd.cut(certified, CERTIFICATION_BANDS, right=False).astype(str)),
    }


def factor_spread(factors: dict[str, pd.DataFrame], min_partners: int = MIN_TIER_PARTNERS) -> list[dict[str, object]]:
    """Factors ranked by the days between their slowest and fastest level's median (levels with at
    least `min_partners` partners and a reached median): factor, slowest, fastest, spread_days."""
    ranked = []
    for name, table in factors.items():
        usable = table[(table["partners"] >= min_partners) & table["median_days"].notna()]
        if len(usable) < 2:
            continue
        slowest = usable.loc[usable["median_days"].idxmax()]
        fastest = usable.loc[usable["median_days"].idxmin()]
        ranked.append(
            {
                "factor": name,
                "slowest": str(slowest[FACTOR_LEVEL]),
                "slowest_median_days": float(slowest["median_days"]),
                "fastest": str(fastest[FACTOR_LEVEL]),
                "fastest_median_days": float(fastest["median_days"]),
                "spread_days": float(slowest["median_days"] - fastest["median_days"]),
            }
        )
    return sorted(ranked, key=lambda row: -float(row["spread_days"]))  # type: ignore[arg-type]


def tier_metrics(ecosystem: schema.Ecosystem, as_of: pd.Timestamp, window_days: int = KPI_WINDOW_DAYS) -> pd.DataFrame:
    """Per partner (partners-table order), over deals created in [as_of - window, as_of) and closed
    before as_of: PARTNER_ID, TIER, ATTEMPTS_WINDOW, WINS_WINDOW, WIN_RATE_WINDOW, PIPELINE_WINDOW,
    REVENUE_WINDOW."""
    attempts = attempts_table(ecosystem)
    start = as_of - pd.Timedelta(days=window_days)
    inside = attempts[(attempts[schema.CREATED_AT] >= start) & (attempts[schema.CREATED_AT] < as_of)]
    closed = inside[inside[schema.CLOSED_AT] < as_of]
    ids = ecosystem.partners[schema.PARTNER_ID]
    count = closed.groupby(schema.PARTNER_ID).size().reindex(ids, fill_value=0).to_numpy()
    wins = closed.groupby(schema.PARTNER_ID)[schema.WON].sum().reindex(ids, fill_value=0).to_numpy()
    market = float(closed[schema.WON].mean()) if len(closed) else 0.0
    return pd.DataFrame(
        {
            schema.PARTNER_ID: ids.to_numpy(),
            schema.TIER: ecosystem.partners[schema.TIER].to_numpy(),
            ATTEMPTS_WINDOW: count,
            WINS_WINDOW: wins.astype(np.int64),
            WIN_RATE_WINDOW: smoothed_rate(wins, count, market),
            PIPELINE_WINDOW: inside.groupby(schema.PARTNER_ID)[schema.AMOUNT]
            .sum()
            .reindex(ids, fill_value=0.0)
            .to_numpy(),
            REVENUE_WINDOW: closed.groupby(schema.PARTNER_ID)[REVENUE].sum().reindex(ids, fill_value=0.0).to_numpy(),
        }
    )


def tier_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per tier (schema.TIERS order, present tiers only): partners, median and 25th percentile of
    win rate and revenue, total pipeline and revenue."""
    rows = []
    for tier in schema.TIERS:
        group = metrics[metrics[schema.TIER] == tier]
        if group.empty:
            continue
        rows.append(
            {
                schema.TIER: tier,
                "partners": len(group),
                "win_rate_median": float(group[WIN_RATE_WINDOW].median()),
                "win_rate_p25": float(group[WIN_RATE_WINDOW].quantile(REVIEW_QUANTILE)),
                "revenue_median": float(group[REVENUE_WINDOW].median()),
                "revenue_p25": float(group[REVENUE_WINDOW].quantile(REVIEW_QUANTILE)),
                "pipeline_total": float(group[PIPELINE_WINDOW].sum()),
                "revenue_total": float(group[REVENUE_WINDOW].sum()),
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class TierThresholds:
    """Per tier: (revenue, win rate) to reach for `promote` (the next tier's medians; None for the top
    tier or a thin next tier) and below which both mean `review` (own tier's 25th percentiles)."""

    promote: dict[str, tuple[float, float] | None]
    review: dict[str, tuple[float, float] | None]

    @classmethod
    def from_summary(cls, summary: pd.DataFrame) -> TierThresholds:
        by_tier = {str(row[schema.TIER]): row for _, row in summary.iterrows() if row["partners"] >= MIN_TIER_PARTNERS}
        promote: dict[str, tuple[float, float] | None] = {}
        review: dict[str, tuple[float, float] | None] = {}
        for level, tier in enumerate(schema.TIERS):
            above = by_tier.get(schema.TIERS[level + 1]) if level + 1 < len(schema.TIERS) else None
            promote[tier] = None if above is None else (float(above["revenue_median"]), float(above["win_rate_median"]))
            own = by_tier.get(tier)
            review[tier] = None if own is None else (float(own["revenue_p25"]), float(own["win_rate_p25"]))
        return cls(promote=promote, review=review)


def recommend_tiers(metrics: pd.DataFrame, thresholds: TierThresholds) -> np.ndarray:
    """(n,) RECOMMENDATIONS per row of `tier_metrics`: promote / keep / review (see the module docstring)."""
    result = np.full(len(metrics), "keep", dtype=object)
    for row, (tier, revenue, win_rate) in enumerate(
        zip(metrics[schema.TIER], metrics[REVENUE_WINDOW], metrics[WIN_RATE_WINDOW], strict=True)
    ):
        promote, review = thresholds.promote.get(tier), thresholds.review.get(tier)
        if promote is not None and revenue >= promote[0] and win_rate >= promote[1]:
            result[row] = "promote"
        elif review is not None and revenue < review[0] and win_rate < review[1]:
            result[row] = "review"
    return result
