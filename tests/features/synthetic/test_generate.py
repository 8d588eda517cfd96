"""The synthetic ecosystem generator: schema conformance, determinism, and recovery of the known
ground truth from the generated tables."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features import pairs, schema, text
from features.synthetic import (
    EPISODE_END,
    EPISODE_START,
    EcosystemConfig,
    GroundTruth,
    generate_ecosystem,
    recent_attempt_counts,
)
from features.synthetic.generate import SENTIMENT_ONSET_RANGE_DAYS
from features.synthetic.truth import DRIFT_STRENGTH, ENGAGEMENT_ONSET_DAYS, SENTIMENT_ONSET_DAYS
from tests.features.synthetic.conftest import MID, SMOKE, Generated, attempt_frame


def _in_episode(truth: GroundTruth, partner_ids: pd.Series, times: pd.Series) -> np.ndarray:
    return truth.in_disengagement(truth.positions(partner_ids), times.to_numpy())


def test_generation_is_deterministic_per_seed(smoke: Generated) -> None:
    ecosystem, truth = smoke
    again, truth_again = generate_ecosystem(SMOKE)
    for spec in schema.ECOSYSTEM_TABLES:
        pd.testing.assert_frame_equal(getattr(ecosystem, spec.name), getattr(again, spec.name))
    np.testing.assert_array_equal(truth.outcome_probability, truth_again.outcome_probability)
    np.testing.assert_array_equal(truth.product_skill, truth_again.product_skill)
    pd.testing.assert_frame_equal(truth.affinity, truth_again.affinity)
    other, _ = generate_ecosystem(EcosystemConfig(partners=200, deals=1000, seed=1))
    assert not ecosystem.deals[schema.REQUIREMENT_TEXT].equals(other.deals[schema.REQUIREMENT_TEXT])


@pytest.mark.parametrize("team_deals", [0, 40])
def test_tables_match_the_schema_specs(smoke: Generated, team_deals: int) -> None:
    """Every spec column, in spec order; columns that `may_be_absent` exactly when team deals are off."""
    ecosystem = smoke[0] if team_deals == 0 else generate_ecosystem(replace(SMOKE, team_deals=team_deals))[0]
    checks = {
        "str": pd.api.types.is_string_dtype,
        "list": pd.api.types.is_string_dtype,
        "float": pd.api.types.is_float_dtype,
        "int": pd.api.types.is_integer_dtype,
        "bool": pd.api.types.is_bool_dtype,
        "datetime": pd.api.types.is_datetime64_dtype,
    }
    for spec in schema.ECOSYSTEM_TABLES:
        table = getattr(ecosystem, spec.name)
        expected = list(spec.columns) if team_deals else spec.required_columns
        assert list(table.columns) == expected, spec.name
        assert len(table) > 0, spec.name
        for column, kind in spec.columns.items():
            if column not in expected:
                continue
            assert checks[kind](table[column]), (spec.name, column, table[column].dtype)
            if kind == "datetime":
                assert table[column].dtype == "datetime64[ns]", (spec.name, column)
            if column not in spec.optional:
                assert table[column].notna().all(), (spec.name, column)
                if kind in ("str", "list"):
                    assert (table[column] != "").all(), (spec.name, column)
        if spec.key:
            assert not table.duplicated(list(spec.key)).any(), spec.name


def test_list_cells_parse_into_the_vocabularies(smoke: Generated) -> None:
    ecosystem, _ = smoke
    partners, deals = ecosystem.partners, ecosystem.deals
    for home, cell in zip(partners[schema.HOME_REGION], partners[schema.PARTNER_REGIONS], strict=True):
        regions = schema.split_list(cell)
        assert regions[0] == home and 1 <= len(regions) <= 3 and set(regions) <= set(schema.REGIONS)
    for cell in partners[schema.CERTIFICATIONS]:
        assert set(schema.parse_certifications(cell)) <= set(schema.PRODUCTS)
    assert set(partners[schema.TIER]) == set(schema.TIERS)
    assert (partners[schema.CAPACITY] >= 1).all()
    assert set(deals[schema.DEAL_REGION]) <= set(schema.REGIONS)
    assert set(deals[schema.SEGMENT]) <= set(schema.SEGMENTS)
    product_counts = pairs.product_mask(deals[schema.DEAL_PRODUCTS], schema.PRODUCTS).sum(axis=1)
    assert product_counts.min() >= 1 and product_counts.max() <= 3
    assert (deals[schema.AMOUNT] > 0).all()
    assert partners[schema.PARTNER_ID].iloc[0] == "P000001" and deals[schema.DEAL_ID].iloc[0] == "D0000001"
    assert deals[schema.CREATED_AT].is_monotonic_increasing


def test_attempts_respect_joins_regions_and_cycles(smoke: Generated) -> None:
    ecosystem, _ = smoke
    attempts = attempt_frame(ecosystem)
    assert (attempts[schema.CREATED_AT] >= attempts[schema.JOINED_AT]).all()
    assert all(
        region in schema.split_list(cell)
        for region, cell in zip(attempts[schema.DEAL_REGION], attempts[schema.PARTNER_REGIONS], strict=True)
    )
    cycle = attempts[schema.CLOSED_AT] - attempts[schema.CREATED_AT]
    assert (cycle >= pd.Timedelta(days=10)).all() and (cycle <= pd.Timedelta(days=121)).all()
    rows_per_deal = ecosystem.outcomes.groupby(schema.DEAL_ID).size()
    assert rows_per_deal.mean() == pytest.approx(SMOKE.attempts_per_deal, rel=0.1)


def test_registrations_and_teams_are_consistent(smoke: Generated) -> None:
    ecosystem, _ = smoke
    outcomes, deals = ecosystem.outcomes, ecosystem.deals
    registered = deals[deals[schema.REGISTERED_PARTNER_ID] != ""]
    assert 0.02 < len(registered) / len(deals) < 0.09
    attempted = set(zip(outcomes[schema.DEAL_ID], outcomes[schema.PARTNER_ID], strict=True))
    assert all(
        pair in attempted
        for pair in zip(registered[schema.DEAL_ID], registered[schema.REGISTERED_PARTNER_ID], strict=True)
    )
    teams = outcomes[outcomes[schema.TEAM_ID] != ""].groupby(schema.TEAM_ID)
    assert teams.ngroups > 0
    assert (teams.size() == 2).all()
    assert (teams[schema.DEAL_ID].nunique() == 1).all() and (teams[schema.WON].nunique() == 1).all()


def test_win_rate_and_true_probability_range(mid: Generated) -> None:
    ecosystem, truth = mid
    probability = truth.outcome_probability
    assert probability.shape == (len(ecosystem.outcomes),)
    assert ((probability > 0) & (probability < 1)).all()
    assert 0.25 < ecosystem.outcomes[schema.WON].mean() < 0.35
    assert np.quantile(probability, 0.01) < 0.05 and np.quantile(probability, 0.99) > 0.75


def test_observed_wins_follow_the_true_probability(mid: Generated) -> None:
    ecosystem, truth = mid
    won = ecosystem.outcomes[schema.WON].to_numpy()
    probability = truth.outcome_probability
    assert probability.mean() == pytest.approx(won.mean(), abs=0.015)
    quintile = pd.qcut(probability, 5, labels=False)
    observed = pd.Series(won).groupby(quintile).mean().to_numpy()
    expected = pd.Series(probability).groupby(quintile).mean().to_numpy()
    assert np.all(np.diff(observed) > 0)
    assert observed[-1] - observed[0] > 0.4
    np.testing.assert_allclose(observed, expected, atol=0.04)


def test_partners_win_more_on_products_they_are_skilled_at(mid: Generated) -> None:
    ecosystem, truth = mid
    attempts = attempt_frame(ecosystem)
    single = attempts[~attempts[schema.DEAL_PRODUCTS].str.contains(schema.LIST_SEPARATOR, regex=False)]
    product_index = pd.Index(schema.PRODUCTS).get_indexer(single[schema.DEAL_PRODUCTS])
    skill = truth.product_skill[truth.positions(single[schema.PARTNER_ID]), product_index]
    won = single[schema.WON].to_numpy()
    assert won[skill > 0.5].mean() > won[skill < 0.0].mean() + 0.15


def test_overloaded_attempts_win_less(mid: Generated) -> None:
    ecosystem, truth = mid
    attempts = attempt_frame(ecosystem)
    counts = recent_attempt_counts(ecosystem, attempts[schema.PARTNER_ID], attempts[schema.CREATED_AT])
    load_ratio = counts / truth.true_capacity[truth.positions(attempts[schema.PARTNER_ID])]
    won = attempts[schema.WON].to_numpy()
    assert 0.05 < (load_ratio > 1).mean() < 0.4
    assert won[load_ratio > 1].mean() < won[load_ratio <= 1].mean() - 0.03


def test_disengaged_partners_engage_less_and_complain_more(mid: Generated) -> None:
    ecosystem, truth = mid
    episodes = truth.disengagement
    assert len(episodes) > 0
    assert (episodes[EPISODE_END] > episodes[EPISODE_START]).all()
    with_episodes = ecosystem.engagement[ecosystem.engagement[schema.PARTNER_ID].isin(episodes[schema.PARTNER_ID])]
    inside = _in_episode(truth, with_episodes[schema.PARTNER_ID], with_episodes[schema.OCCURRED_AT])
    episode_days = ((episodes[EPISODE_END] - episodes[EPISODE_START]).dt.total_seconds() / 86_400).sum()
    # These partners are observable for at most the whole window; inside-episode days are far fewer.
    partner_days = episodes[schema.PARTNER_ID].nunique() * MID.days
    assert inside.sum() / episode_days < 0.3 * (~inside).sum() / (partner_days - episode_days)

    messages = ecosystem.communications
    inside_message = _in_episode(truth, messages[schema.PARTNER_ID], messages[schema.SENT_AT])
    negative = (
        messages[schema.MESSAGE_TEXT]
        .str.lower()
        .map(lambda message: any(phrase.lower() in message for phrase in text.NEGATIVE_PHRASES))
    )
    assert negative[inside_message].mean() > negative[~inside_message].mean() + 0.3
    assert truth.message_sentiment[inside_message].mean() < truth.message_sentiment[~inside_message].mean() - 0.5


# Realistic activity (as the health model trains on) and many episodes; few deals keep it quick.
DRIFT = EcosystemConfig(
    partners=800,
    deals=500,
    days=1095,
    seed=2,
    engagement_per_partner_month=6.0,
    messages_per_partner_month=2.0,
    disengagement_per_partner_year=0.3,
)


def _events_before_starts(truth: GroundTruth, partner_ids: pd.Series, times: pd.Series) -> tuple[np.ndarray, ...]:
    """Per event: (inside an episode, row of the partner's next episode or -1, days until it starts)."""
    positions, seconds = truth.positions(partner_ids), pairs.to_seconds(times)
    row, days = truth.episodes.next_start(positions, seconds)
    return truth.episodes.inside(positions, seconds), row, days


def test_disengagement_fades_in_over_months_sentiment_first() -> None:
    ecosystem, truth = generate_ecosystem(DRIFT)
    episodes = truth.disengagement
    sentiment_onset, engagement_onset = episodes[SENTIMENT_ONSET_DAYS], episodes[ENGAGEMENT_ONSET_DAYS]
    assert sentiment_onset.between(*SENTIMENT_ONSET_RANGE_DAYS).all()
    assert (engagement_onset <= sentiment_onset).all()
    assert 0.3 < (engagement_onset < sentiment_onset).mean() < 0.7  # engagement lags for some partners
    assert episodes[DRIFT_STRENGTH].between(0.0, 1.0, inclusive="right").all()

    messages = ecosystem.communications
    inside, row, days = _events_before_starts(truth, messages[schema.PARTNER_ID], messages[schema.SENT_AT])
    calm = truth.message_sentiment[~inside & (days > 240)].mean()
    # Two to three months ahead, messages have already soured (the old generator drifted for 60 days only).
    assert truth.message_sentiment[~inside & (days >= 60) & (days < 90)].mean() < calm - 0.1
    # Where sentiment slides but engagement has not started to: sentiment is lower all the same.
    lagging = (row >= 0) & (days < sentiment_onset.to_numpy()[row]) & (days >= engagement_onset.to_numpy()[row])
    assert truth.message_sentiment[~inside & lagging].mean() < calm - 0.05

    # Engagement of the same partners in the month before their first episode against months 9-10
    # before it, for episodes that start 300+ days after the partner became observable.
    joined = episodes[schema.PARTNER_ID].map(ecosystem.partners.set_index(schema.PARTNER_ID)[schema.JOINED_AT])
    observable = joined.clip(lower=pd.Timestamp(DRIFT.start))
    first_episode = ~episodes[schema.PARTNER_ID].duplicated()
    covered = (first_episode & (episodes[EPISODE_START] - observable >= pd.Timedelta(days=300))).to_numpy()
    events = ecosystem.engagement
    _, row, days = _events_before_starts(truth, events[schema.PARTNER_ID], events[schema.OCCURRED_AT])
    counted = (row >= 0) & covered[np.maximum(row, 0)]
    last_month = (counted & (days < 30)).sum()
    earlier_month = (counted & (days >= 270) & (days < 300)).sum()
    assert last_month < 0.8 * earlier_month


def test_profiles_mention_strong_products_more_than_others(mid: Generated) -> None:
    ecosystem, truth = mid
    mentioned = np.array(
        [
            [product in found for product in schema.PRODUCTS]
            for found in map(text.mentioned_products, ecosystem.partners[schema.PROFILE_TEXT])
        ]
    )
    skill = truth.product_skill[truth.positions(ecosystem.partners[schema.PARTNER_ID])]
    assert mentioned[skill > 0.8].mean() > 0.6
    assert mentioned[skill < 0.0].mean() < 0.1


def test_requirements_mention_the_deal_products(smoke: Generated) -> None:
    ecosystem, _ = smoke
    needed = pairs.product_mask(ecosystem.deals[schema.DEAL_PRODUCTS], schema.PRODUCTS)
    found = np.array(
        [
            [product in mentioned for product in schema.PRODUCTS]
            for mentioned in map(text.mentioned_products, ecosystem.deals[schema.REQUIREMENT_TEXT])
        ]
    )
    assert not (found & ~needed).any()
    assert (found & needed).sum() / needed.sum() > 0.9


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="attempts_per_deal"):
        EcosystemConfig(attempts_per_deal=0.5)
    with pytest.raises(ValueError, match="team_deal_share"):
        EcosystemConfig(team_deal_share=1.5)


@pytest.mark.slow
def test_generates_a_million_rows_at_full_scale() -> None:
    config = EcosystemConfig(partners=100_000, deals=200_000, seed=0)
    ecosystem, truth = generate_ecosystem(config)
    assert len(ecosystem.partners) == config.partners and len(ecosystem.deals) == config.deals
    assert len(ecosystem.outcomes) == pytest.approx(config.deals * config.attempts_per_deal, rel=0.05)
    assert truth.outcome_probability.shape == (len(ecosystem.outcomes),)
    assert truth.product_skill.shape == (config.partners, len(schema.PRODUCTS))
