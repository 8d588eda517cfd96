"""Team deals in the synthetic ecosystem: the regular stream is untouched, every team covers every
requirement, the oracle reproduces the recorded team probabilities and scores any candidate team."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import schema
from features.synthetic import (
    EcosystemConfig,
    GroundTruth,
    generate_ecosystem,
    oracle_probability,
    team_deal_probability,
)
from features.teams import team_members
from tests.features.synthetic.conftest import SMOKE, Generated

TEAMS = EcosystemConfig(partners=SMOKE.partners, deals=SMOKE.deals, seed=SMOKE.seed, team_deals=150)


@pytest.fixture(scope="module")
def with_teams() -> Generated:
    return generate_ecosystem(TEAMS)


def test_regular_stream_is_unchanged(smoke: Generated, with_teams: Generated) -> None:
    """Same draws; outcomes differ only where team members' extra load changed the probability."""
    (plain, plain_truth), (teams, team_truth) = smoke, with_teams
    pd.testing.assert_frame_equal(plain.partners, teams.partners)
    pd.testing.assert_frame_equal(plain.deals, teams.deals.iloc[: len(plain.deals)])
    regular = teams.outcomes.iloc[: len(plain.outcomes)]
    pd.testing.assert_frame_equal(
        plain.outcomes.drop(columns=schema.WON), regular.drop(columns=[schema.WON, schema.COVERS_PRODUCT])
    )
    same_probability = plain_truth.outcome_probability == team_truth.outcome_probability[: len(plain.outcomes)]
    assert same_probability.mean() > 0.9
    assert (plain.outcomes[schema.WON] == regular[schema.WON])[same_probability].all()
    assert schema.COVERS_PRODUCT not in plain.outcomes.columns
    assert (regular[schema.COVERS_PRODUCT] == "").all()


def test_every_team_covers_every_requirement_once(with_teams: Generated) -> None:
    ecosystem, _ = with_teams
    members = team_members(ecosystem.outcomes)
    assert members[schema.DEAL_ID].nunique() == TEAMS.team_deals
    products = ecosystem.deals.set_index(schema.DEAL_ID)[schema.DEAL_PRODUCTS]
    for deal_id, team in members.groupby(schema.DEAL_ID):
        covered = [p for cell in team[schema.COVERS_PRODUCT] for p in schema.split_list(cell)]
        assert sorted(covered) == sorted(schema.split_list(products[deal_id]))
        assert 2 <= len(covered) <= 7
        assert team[schema.TEAM_ID].nunique() == 1 and team[schema.WON].nunique() == 1


def test_oracle_reproduces_and_scores_candidate_teams(with_teams: Generated) -> None:
    ecosystem, truth = with_teams
    assert oracle_probability(truth, ecosystem, ecosystem.outcomes) == pytest.approx(truth.outcome_probability)
    members = team_members(ecosystem.outcomes)
    deal_id = members[schema.DEAL_ID].iloc[0]
    deal = ecosystem.deals[ecosystem.deals[schema.DEAL_ID] == deal_id]
    team = members[members[schema.DEAL_ID] == deal_id]
    member_ids = np.full((2, len(schema.PRODUCTS)), "", dtype=object)
    for partner, cell in zip(team[schema.PARTNER_ID], team[schema.COVERS_PRODUCT], strict=True):
        for product in schema.split_list(cell):
            member_ids[0, schema.PRODUCTS.index(product)] = partner
    member_ids[1] = member_ids[0]
    member_ids[1, schema.PRODUCTS.index(schema.split_list(team[schema.COVERS_PRODUCT].iloc[0])[0])] = ""
    recorded = truth.outcome_probability[team.index[0]]
    scored = team_deal_probability(truth, ecosystem, deal, np.zeros(2, dtype=np.int64), member_ids)
    assert scored[0] == pytest.approx(recorded)
    assert scored[1] == 0.0  # an uncovered requirement cannot be won


def test_team_coefficients_survive_save_and_load(with_teams: Generated, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, truth = with_teams
    truth.save(tmp_path)
    assert GroundTruth.load(tmp_path).team_coefficients == truth.team_coefficients
