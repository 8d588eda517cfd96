"""The true win model and the oracle: it reproduces the generator's probabilities and scores any slate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import io, pairs, schema
from features.synthetic import oracle_probability, recent_attempt_counts
from tests.features.synthetic.conftest import Generated, attempt_frame


def test_load_counts_the_load_window_before_the_deal(smoke: Generated) -> None:
    ecosystem, _ = smoke
    attempts = attempt_frame(ecosystem)[[schema.PARTNER_ID, schema.CREATED_AT]].reset_index(names="row")
    same_partner = attempts.merge(attempts, on=schema.PARTNER_ID, suffixes=("", "_other"))
    other_created = same_partner[f"{schema.CREATED_AT}_other"]
    recent = (other_created >= same_partner[schema.CREATED_AT] - schema.LOAD_WINDOW) & (
        other_created < same_partner[schema.CREATED_AT]
    )
    naive = same_partner[recent].groupby("row").size().reindex(attempts["row"], fill_value=0).to_numpy()
    counted = recent_attempt_counts(ecosystem, attempts[schema.PARTNER_ID], attempts[schema.CREATED_AT])
    np.testing.assert_array_equal(counted, naive)
    assert naive.max() > 0


def test_oracle_reproduces_the_historical_probabilities(smoke: Generated) -> None:
    ecosystem, truth = smoke
    probability = oracle_probability(truth, ecosystem, ecosystem.deals, ecosystem.outcomes)
    np.testing.assert_array_equal(probability, truth.outcome_probability)
    shorthand = oracle_probability(truth, ecosystem, ecosystem.outcomes[[schema.DEAL_ID, schema.PARTNER_ID]])
    solo = (ecosystem.outcomes[schema.TEAM_ID] == "").to_numpy()
    np.testing.assert_array_equal(shorthand[solo], truth.outcome_probability[solo])


def test_oracle_scores_arbitrary_slates(smoke: Generated) -> None:
    ecosystem, truth = smoke
    deals = ecosystem.deals.iloc[[100, 500]]
    partners = ecosystem.partners
    in_region = [
        partners.loc[partners[schema.PARTNER_REGIONS].str.contains(region), schema.PARTNER_ID].head(3).tolist()
        for region in deals[schema.DEAL_REGION]
    ]
    slates = [[*slate, "P000001", "P000002"] for slate in in_region]
    per_deal = oracle_probability(truth, ecosystem, deals, slates)
    slate_pairs = pd.DataFrame(
        {
            schema.DEAL_ID: np.repeat(deals[schema.DEAL_ID].to_numpy(), [len(slate) for slate in slates]),
            schema.PARTNER_ID: [partner for slate in slates for partner in slate],
        }
    )
    np.testing.assert_array_equal(per_deal, oracle_probability(truth, ecosystem, deals, slate_pairs))
    assert ((per_deal > 0) & (per_deal < 1)).all()
    with pytest.raises(pairs.FeatureError, match="P999999") as unknown:
        oracle_probability(truth, ecosystem, deals, [["P999999"], []])
    assert unknown.value.field == schema.PARTNER_ID


def test_oracle_penalises_operating_outside_the_partner_regions(smoke: Generated) -> None:
    ecosystem, truth = smoke
    deal = ecosystem.deals.iloc[[300]]
    partner = ecosystem.partners.iloc[0]
    elsewhere = next(region for region in schema.REGIONS if region not in partner[schema.PARTNER_REGIONS])
    moved = deal.assign(**{schema.DEAL_REGION: [partner[schema.HOME_REGION]]})
    moved_away = deal.assign(**{schema.DEAL_REGION: [elsewhere]})
    at_home = oracle_probability(truth, ecosystem, moved, [[partner[schema.PARTNER_ID]]])
    away = oracle_probability(truth, ecosystem, moved_away, [[partner[schema.PARTNER_ID]]])
    assert away[0] < at_home[0] / 3


def test_tables_survive_parquet_and_still_reproduce_the_truth(smoke: Generated, tmp_path: Path) -> None:
    ecosystem, truth = smoke
    io.write_ecosystem(ecosystem, tmp_path)
    loaded = io.read_ecosystem(tmp_path)
    for spec in schema.ECOSYSTEM_TABLES:
        pd.testing.assert_frame_equal(getattr(loaded, spec.name), getattr(ecosystem, spec.name))
    np.testing.assert_array_equal(
        oracle_probability(truth, loaded, loaded.deals, loaded.outcomes), truth.outcome_probability
    )
