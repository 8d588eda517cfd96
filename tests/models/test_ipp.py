"""models.ipp pieces: features, nearest members, group similarities, first-win bands, one-pass explanations."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from features import schema
from features.prospects import Prospect
from models.ipp import (
    ATTRIBUTE_FEATURES,
    FEATURE_NAMES,
    NEIGHBOURS,
    TOP_GROUP,
    FirstWinBands,
    IppModel,
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


def test_group_similarities_at_once_match_a_search_per_group() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    reference = ReferenceSet(
        partner_ids=np.array([f"p{number}" for number in range(40)]),
        vectors=vectors,
        win_rates=rng.random(40),
        # More members than NEIGHBOURS, fewer (one of them the query itself), and none.
        groups={
            TOP_GROUP: np.arange(0, 40, 2),
            "product:firewall": np.array([1, 3, 5]),
            "product:storage": np.array([], dtype=np.int64),
        },
    )
    queries = np.vstack([vectors[:6], rng.normal(size=(2, 8)).astype(np.float32)])
    queries[6:] /= np.linalg.norm(queries[6:], axis=1, keepdims=True)
    exclude = [f"p{number}" for number in range(6)] + ["new", "other"]
    at_once = reference.mean_similarities(queries, exclude)
    for group in reference.groups:
        _, similarities = reference.nearest(group, queries, NEIGHBOURS, exclude)
        expected = [np.nan if np.isnan(row).all() else np.nanmean(row) for row in similarities]
        assert at_once[group] == pytest.approx(expected, abs=1e-6, nan_ok=True)
    # p1 is left out of its own 3-member group: it averages the other two.
    assert at_once["product:firewall"][1] == pytest.approx(
        float(vectors[[3, 5]] @ vectors[1] @ np.full(2, 0.5)), abs=1e-6
    )
    assert np.isnan(at_once["product:storage"]).all()


def test_one_pass_gives_the_prediction_and_contributions_that_sum_to_it() -> None:
    rng = np.random.default_rng(1)
    features = rng.random((300, len(FEATURE_NAMES)))
    target = 0.2 + 0.5 * features[:, 0] * features[:, 1]
    booster = lgb.train(
        {"objective": "regression", "verbosity": -1, "num_leaves": 7}, lgb.Dataset(features, target), 20
    )
    model = IppModel(
        booster=booster,
        reference=ReferenceSet(np.array([], dtype=str), np.zeros((0, 8), np.float32), np.array([]), {}),
        encoder="hashing-8",
        partner_scores=np.array([]),
        first_win=FirstWinBands(edges=(), median_days=(float("nan"),), observed_days=100.0),
        white_space=pd.DataFrame(),
    )
    expected, contributions = model.explained(features[:50])
    assert expected == pytest.approx(model.predict(features[:50]), abs=1e-9)
    assert contributions.shape == (50, len(FEATURE_NAMES))
    assert np.abs(contributions[:, :2]).sum() > np.abs(contributions[:, 2:]).sum()
