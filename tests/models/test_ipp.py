"""models.ipp pieces that need no fitted booster: features, nearest members, first-win bands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import schema
from features.prospects import Prospect
from models.ipp import (
    ATTRIBUTE_FEATURES,
    TOP_GROUP,
    FirstWinBands,
    ReferenceSet,
    attribute_features,
    deal_flow_matrix,
)


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def prospect(**changes: object) -> Prospect:
    fields: dict[str, object] = {
        "prospect_id": "x",
        "profile_text": "firewall partner",
        "products": ("firewall", "sd-wan"),
        "certifications": {"firewall": 3, "sd-wan": 1},
        "regions": ("dach",),
        "capacity": 4,
    }
    return Prospect(**(fields | changes))  # type: ignore[arg-type]


def test_attribute_features_follow_certifications_and_the_deal_flow_they_cover() -> None:
    flow = np.zeros((len(schema.PRODUCTS), len(schema.REGIONS)))
    dach = schema.REGIONS.index("dach")
    flow[schema.PRODUCTS.index("firewall"), dach] = 30.0
    flow[schema.PRODUCTS.index("storage"), dach] = 10.0
    row = dict(zip(ATTRIBUTE_FEATURES, attribute_features([prospect()], flow)[0].tolist(), strict=True))
    assert row["certified_products"] == 2 and row["mean_certification_level"] == 2.0
    assert row["max_certification_level"] == 3 and row["regions"] == 1
    assert row["log_capacity"] == pytest.approx(np.log(4)) and row["tenure_at_start_days"] == 0
    # firewall (expert) covers 30 of the 40 deals a month in dach: 30 * 3 / (3 * 40).
    assert row["certified_deal_flow"] == pytest.approx(0.75) and row["sold_deal_flow"] == pytest.approx(0.75)


def test_deal_flow_matrix_places_each_cell() -> None:
    table = pd.DataFrame({"product": ["storage"], "region": ["uk-ie"], "deals_per_month": [7.0]})
    flow = deal_flow_matrix(table)
    assert flow.sum() == 7.0 and flow[schema.PRODUCTS.index("storage"), schema.REGIONS.index("uk-ie")] == 7.0


def test_nearest_leaves_a_partner_out_of_its_own_group() -> None:
    vectors = np.stack([unit(1, 0, 0), unit(0.9, 0.1, 0), unit(0, 1, 0)])
    reference = ReferenceSet(
        partner_ids=np.array(["A", "B", "C"]),
        vectors=vectors,
        win_rates=np.array([0.5, 0.4, 0.3]),
        groups={TOP_GROUP: np.array([0, 1, 2])},
    )
    positions, similarities = reference.nearest(TOP_GROUP, vectors[:1], 2)
    assert positions.tolist() == [[0, 1]] and similarities[0, 0] == pytest.approx(1.0)
    positions, similarities = reference.nearest(TOP_GROUP, vectors[:1], 2, exclude_ids=["A"])
    assert positions.tolist() == [[1, 2]] and similarities[0, 0] < 1.0
    missing, nothing = reference.nearest("product:storage", vectors[:1], 2)
    assert missing.tolist() == [[-1, -1]] and np.isnan(nothing).all()


def test_first_win_bands_look_up_by_expected_win_rate() -> None:
    bands = FirstWinBands(edges=(0.2, 0.4), median_days=(200.0, 120.0, float("nan")), observed_days=700.0)
    days = bands.lookup(np.array([0.1, 0.3, 0.5]))
    assert days[:2].tolist() == [200.0, 120.0] and np.isnan(days[2])
