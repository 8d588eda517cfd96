"""features.health (point in time: events at or after the as-of time never count) and features.kpis
(Kaplan-Meier medians, tier thresholds and recommendations on hand-made data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import schema
from features.health import (
    AS_OF,
    DAYS_SINCE_ENGAGEMENT,
    ENGAGEMENT_30D,
    ENGAGEMENT_TREND,
    HEALTH_FEATURES,
    MESSAGES_RECENT,
    SENTIMENT_RECENT,
    MessageScores,
    as_of_rows,
    health_features,
)
from features.kpis import (
    RECOMMENDATION,
    REVENUE_WINDOW,
    WIN_RATE_WINDOW,
    TierThresholds,
    kaplan_meier_median,
    recommend_tiers,
    tier_summary,
)
from features.synthetic import EcosystemConfig, generate_ecosystem

AS_OF_TIME = pd.Timestamp("2024-03-01")


@pytest.fixture(scope="module")
def world() -> tuple[schema.Ecosystem, MessageScores]:
    ecosystem, _ = generate_ecosystem(EcosystemConfig(partners=60, deals=600, seed=1))
    rng = np.random.default_rng(0)
    count = len(ecosystem.communications)
    return ecosystem, MessageScores(rng.uniform(-1, 1, count), rng.uniform(0, 1, count))


def _after(table: pd.DataFrame, column: str) -> np.ndarray:
    return (table[column] >= AS_OF_TIME).to_numpy()


def test_events_after_the_as_of_time_do_not_change_features(world: tuple[schema.Ecosystem, MessageScores]) -> None:
    ecosystem, scores = world
    rows = as_of_rows(ecosystem.partners[schema.PARTNER_ID].to_numpy(), AS_OF_TIME)
    before = health_features(ecosystem, scores, rows)

    # Rewrite the future: every later event becomes a login / a furious message / a won deal.
    engagement = ecosystem.engagement.copy()
    engagement.loc[_after(engagement, schema.OCCURRED_AT), schema.EVENT_KIND] = "portal_login"
    extra = engagement[_after(engagement, schema.OCCURRED_AT)]
    messages = ecosystem.communications
    future_messages = _after(messages, schema.SENT_AT)
    rewritten_scores = MessageScores(
        np.where(future_messages, -1.0, scores.polarity), np.where(future_messages, 1.0, scores.frustration)
    )
    outcomes = ecosystem.outcomes.copy()
    outcomes.loc[_after(outcomes, schema.CLOSED_AT), schema.WON] = True
    deals = ecosystem.deals.copy()
    deals.loc[_after(deals, schema.CREATED_AT), schema.AMOUNT] *= 10
    future = schema.Ecosystem(
        partners=ecosystem.partners,
        deals=deals,
        outcomes=outcomes,
        engagement=pd.concat([engagement, extra], ignore_index=True),
        communications=messages,
    )
    after = health_features(future, rewritten_scores, rows)
    pd.testing.assert_frame_equal(before, after)
    assert extra.shape[0] > 0 and future_messages.any()


def test_a_past_change_does_change_features(world: tuple[schema.Ecosystem, MessageScores]) -> None:
    """The leak test can fail: an event just before the as-of time counts."""
    ecosystem, scores = world
    partner = str(ecosystem.partners[schema.PARTNER_ID].iloc[0])
    rows = as_of_rows([partner], AS_OF_TIME)
    base = health_features(ecosystem, scores, rows)
    login = pd.DataFrame(
        {
            schema.PARTNER_ID: [partner],
            schema.OCCURRED_AT: [AS_OF_TIME - pd.Timedelta(days=1)],
            schema.EVENT_KIND: ["portal_login"],
        }
    )
    busier = schema.Ecosystem(
        ecosystem.partners,
        ecosystem.deals,
        ecosystem.outcomes,
        pd.concat([ecosystem.engagement, login]),
        ecosystem.communications,
    )
    changed = health_features(busier, scores, rows)
    assert changed[ENGAGEMENT_30D].iloc[0] == base[ENGAGEMENT_30D].iloc[0] + 1
    assert changed[ENGAGEMENT_TREND].iloc[0] > base[ENGAGEMENT_TREND].iloc[0]
    assert changed[DAYS_SINCE_ENGAGEMENT].iloc[0] == pytest.approx(1.0)


def test_features_shape_and_missing_sentiment(world: tuple[schema.Ecosystem, MessageScores]) -> None:
    ecosystem, scores = world
    rows = as_of_rows(
        ecosystem.partners[schema.PARTNER_ID].to_numpy(), [AS_OF_TIME, AS_OF_TIME + pd.Timedelta(days=30)]
    )
    features = health_features(ecosystem, scores, rows)
    assert list(features.columns) == list(HEALTH_FEATURES)
    assert len(features) == 2 * len(ecosystem.partners) and rows[AS_OF].nunique() == 2
    silent = features[MESSAGES_RECENT] == 0
    assert features.loc[silent, SENTIMENT_RECENT].isna().all()
    assert features.loc[~silent, SENTIMENT_RECENT].between(-1, 1).all()


def test_kaplan_meier_median_counts_censored_partners() -> None:
    days = np.array([10.0, 20.0, 30.0, 40.0])
    assert kaplan_meier_median(days, np.array([True, True, True, True])) == 20.0
    # Censoring the early ones leaves fewer at risk later: the median moves out.
    assert kaplan_meier_median(days, np.array([False, True, True, True])) == 30.0
    assert np.isnan(kaplan_meier_median(days, np.zeros(4, dtype=bool)))


def test_tier_recommendations_follow_the_tier_distributions() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for level, tier in enumerate(("registered", "silver")):
        for _ in range(20):
            rows.append(
                {schema.TIER: tier, REVENUE_WINDOW: rng.uniform(0, 10) + 10 * level, WIN_RATE_WINDOW: 0.2 + 0.1 * level}
            )
    metrics = pd.DataFrame(rows)
    metrics[schema.PARTNER_ID] = [f"P{index}" for index in range(len(metrics))]
    metrics["pipeline_amount_365d"] = 1.0
    star = {schema.PARTNER_ID: "star", schema.TIER: "registered", REVENUE_WINDOW: 100.0, WIN_RATE_WINDOW: 0.9}
    laggard = {schema.PARTNER_ID: "lag", schema.TIER: "silver", REVENUE_WINDOW: 0.0, WIN_RATE_WINDOW: 0.01}
    metrics = pd.concat([metrics, pd.DataFrame([star, laggard])], ignore_index=True).fillna(
        {"pipeline_amount_365d": 1.0}
    )
    thresholds = TierThresholds.from_summary(tier_summary(metrics))
    assert thresholds.promote["silver"] is None  # no gold partners: nothing to reach
    metrics[RECOMMENDATION] = recommend_tiers(metrics, thresholds)
    by_id = metrics.set_index(schema.PARTNER_ID)[RECOMMENDATION]
    assert by_id["star"] == "promote"
    assert by_id["lag"] == "review"
    assert (by_id.drop(["star", "lag"]) != "promote").all()
