"""Generated ecosystems shared by the synthetic tests (generated once per package run)."""

from __future__ import annotations

import pandas as pd
import pytest

from features import schema
from features.synthetic import EcosystemConfig, GroundTruth, generate_ecosystem

SMOKE = EcosystemConfig(partners=200, deals=1000, seed=0)
MID = EcosystemConfig(partners=1000, deals=4000, seed=1)  # ~20k outcome rows

Generated = tuple[schema.Ecosystem, GroundTruth]


@pytest.fixture(scope="package")
def smoke() -> Generated:
    return generate_ecosystem(SMOKE)


@pytest.fixture(scope="package")
def mid() -> Generated:
    return generate_ecosystem(MID)


def attempt_frame(ecosystem: schema.Ecosystem) -> pd.DataFrame:
    """Outcomes rows with their deal and partner columns, in outcomes order."""
    return ecosystem.outcomes.merge(ecosystem.deals, on=schema.DEAL_ID, how="left", validate="many_to_one").merge(
        ecosystem.partners, on=schema.PARTNER_ID, how="left", validate="many_to_one"
    )
