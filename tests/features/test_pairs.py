"""Point-in-time pair features: values on a hand-built world, and proof that nothing after a
deal's creation changes its features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import pairs, schema
from tests.conftest import RecordingProgress, tiny_world


def _vectors(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, 8)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _features(world: schema.Ecosystem, deal_rows: np.ndarray, partner_rows: np.ndarray) -> pd.DataFrame:
    context = pairs.build_feature_context(
        world.partners, world.deals, world.outcomes, world.engagement, _vectors(len(world.partners), 1)
    )
    batch = pairs.deal_batch(world.deals, _vectors(len(world.deals), 2), context.products, context.regions)
    return pairs.pair_features(context, batch, deal_rows, partner_rows)


def _all_pairs(world: schema.Ecosystem) -> tuple[np.ndarray, np.ndarray]:
    deal_rows, partner_rows = np.meshgrid(np.arange(len(world.deals)), np.arange(len(world.partners)), indexing="ij")
    return deal_rows.ravel(), partner_rows.ravel()


def test_feature_frame_shape_and_ranges(world: schema.Ecosystem) -> None:
    features = _features(world, *_all_pairs(world))
    assert list(features.columns) == list(pairs.FEATURE_COLUMNS)
    assert len(features) == len(world.deals) * len(world.partners)
    for rate in (pairs.WIN_RATE_PRODUCTS, pairs.WIN_RATE_REGION, pairs.WIN_RATE_OVERALL, pairs.CERT_COVERAGE):
        assert features[rate].between(0, 1).all(), rate
    assert features[pairs.EMBEDDING_SIMILARITY].between(-1.0001, 1.0001).all()
    assert (features[pairs.TENURE_DAYS] >= 0).all()
    assert set(features[pairs.REGION_MATCH].unique()) <= {0.0, 1.0}


def test_counts_match_a_direct_computation(world: schema.Ecosystem) -> None:
    deal_row, partner_row = 50, 4
    features = _features(world, np.array([deal_row]), np.array([partner_row])).iloc[0]
    created = world.deals[schema.CREATED_AT].iloc[deal_row]
    partner_id = world.partners[schema.PARTNER_ID].iloc[partner_row]
    mine = world.outcomes[world.outcomes[schema.PARTNER_ID] == partner_id]
    known = mine[mine[schema.CLOSED_AT] < created]
    assert features[pairs.ATTEMPTS_OVERALL] == pytest.approx(np.log1p(len(known)))
    deal_created = world.deals.set_index(schema.DEAL_ID)[schema.CREATED_AT]
    load = mine[
        (deal_created.loc[mine[schema.DEAL_ID]].to_numpy() < created)
        & (deal_created.loc[mine[schema.DEAL_ID]].to_numpy() >= created - schema.LOAD_WINDOW)
    ]
    capacity = world.partners[schema.CAPACITY].iloc[partner_row]
    assert features[pairs.LOAD_RATIO] == pytest.approx(len(load) / capacity)
    events = world.engagement[world.engagement[schema.PARTNER_ID] == partner_id][schema.OCCURRED_AT]
    recent = ((events < created) & (events >= created - pairs.ENGAGEMENT_RECENT)).sum()
    assert features[pairs.ENGAGEMENT_30D] == recent


def test_no_feature_uses_information_from_after_the_deal(world: schema.Ecosystem) -> None:
    """Rewrite everything that happens at or after each deal's creation: its features stay equal."""
    deal_rows, partner_rows = _all_pairs(world)
    before = _features(world, deal_rows, partner_rows)
    cutoff = world.deals[schema.CREATED_AT].iloc[30]
    pick = deal_rows <= 30
    pick &= (world.deals[schema.CREATED_AT].to_numpy()[deal_rows] < cutoff) | (deal_rows == 30)

    future = world.outcomes[schema.CLOSED_AT] >= cutoff
    outcomes = world.outcomes.copy()
    outcomes.loc[future, schema.WON] = ~outcomes.loc[future, schema.WON]
    late_deals = world.deals[world.deals[schema.CREATED_AT] >= cutoff][schema.DEAL_ID]
    extra_attempts = pd.DataFrame(
        {
            schema.DEAL_ID: np.repeat(late_deals.to_numpy(), 3),
            schema.PARTNER_ID: [f"P{i % 20:03d}" for i in range(3 * len(late_deals))],
            schema.WON: True,
            schema.CLOSED_AT: cutoff + pd.Timedelta(days=1),
            schema.TEAM_ID: "",
        }
    )
    outcomes = pd.concat([outcomes, extra_attempts], ignore_index=True).drop_duplicates(
        [schema.DEAL_ID, schema.PARTNER_ID]
    )
    engagement = pd.concat(
        [
            world.engagement,
            pd.DataFrame(
                {
                    schema.PARTNER_ID: world.partners[schema.PARTNER_ID],
                    schema.OCCURRED_AT: cutoff,
                    schema.EVENT_KIND: "portal_login",
                }
            ),
        ],
        ignore_index=True,
    )
    changed = schema.Ecosystem(world.partners, world.deals, outcomes, engagement, world.communications)
    after = _features(changed, deal_rows, partner_rows)
    pd.testing.assert_frame_equal(before[pick].reset_index(drop=True), after[pick].reset_index(drop=True))
    # ...while deals after the cutoff do see the new history (the check can fail).
    assert not before[~pick].equals(after[~pick])


def test_unknown_product_and_region_are_named() -> None:
    world = tiny_world()
    context = pairs.build_feature_context(
        world.partners, world.deals, world.outcomes, world.engagement, _vectors(len(world.partners), 1)
    )
    bad = world.deals.head(1).assign(**{schema.DEAL_PRODUCTS: "quantum-widgets"})
    with pytest.raises(pairs.FeatureError) as error:
        pairs.deal_batch(bad, _vectors(1, 3), context.products, context.regions)
    assert error.value.field == schema.DEAL_PRODUCTS
    bad = world.deals.head(1).assign(**{schema.DEAL_REGION: "mars"})
    with pytest.raises(pairs.FeatureError) as error:
        pairs.deal_batch(bad, _vectors(1, 3), context.products, context.regions)
    assert error.value.field == schema.DEAL_REGION
    bad = world.deals.head(1).assign(**{schema.AMOUNT: -5.0})
    with pytest.raises(pairs.FeatureError, match="positive"):
        pairs.deal_batch(bad, _vectors(1, 3), context.products, context.regions)


def test_event_index_sums_strictly_before() -> None:
    index = pairs.EventIndex.build(np.array([1, 1, 2, 1]), np.array([10, 20, 15, 30]), np.array([1.0, 2.0, 4.0, 8.0]))
    sums = index.sum_before(np.array([1, 1, 1, 2, 3]), np.array([20, 21, 100, 15, 100]))[:, 0]
    np.testing.assert_allclose(sums, [1.0, 3.0, 11.0, 0.0, 0.0])


def test_event_keys_sort_by_key_then_time() -> None:
    keys, seconds = np.array([2, 1, 1, 0]), np.array([5, 2**33, 7, 2**34 - 1])
    order = np.argsort(pairs.event_keys(keys, seconds))
    np.testing.assert_array_equal(order, np.lexsort((seconds, keys)))


def test_recent_attempts_count_the_half_open_load_window() -> None:
    window = int(schema.LOAD_WINDOW.total_seconds())
    now = 10 * window
    # Partner 0: one attempt at the window's start (counts), one a second earlier, one at `now` (neither).
    attempts = pairs.EventIndex.build(
        np.array([0, 0, 0, 0, 1]),
        np.array([now - window, now - window - 1, now - 1, now, now - 5]),
        np.ones(5),
    )
    counts = pairs.recent_attempts(attempts, np.array([0, 1, 2]), np.full(3, now))
    np.testing.assert_array_equal(counts, [2.0, 1.0, 0.0])


def test_positions_name_the_field_and_the_unknown_values() -> None:
    vocabulary = pd.Index(["b", "a", "c"])
    np.testing.assert_array_equal(pairs.positions(pd.Series(["a", "c", "a"]), vocabulary, "letter"), [1, 2, 1])
    with pytest.raises(pairs.FeatureError, match="'x'") as error:
        pairs.positions(["a", "x"], vocabulary, "letter")
    assert error.value.field == "letter"


def test_product_mask_parses_every_row_and_names_the_empty_one() -> None:
    products = ("a", "b", "c")
    cells = ["a|c", "b", "a|c", "c|a|b"]
    expected = [[True, False, True], [False, True, False], [True, False, True], [True, True, True]]
    np.testing.assert_array_equal(pairs.product_mask(pd.Series(cells), products), expected)
    assert pairs.product_mask([], products).shape == (0, 3)
    with pytest.raises(pairs.FeatureError, match="row 2 lists no products"):
        pairs.product_mask(["a", "a", "", "b", ""], products)


def test_frozen_context_gives_the_same_features_at_every_time() -> None:
    world = tiny_world()
    context = pairs.build_feature_context(
        world.partners, world.deals, world.outcomes, world.engagement, _vectors(len(world.partners), 1)
    )
    batch = pairs.deal_batch(world.deals, _vectors(len(world.deals), 2), context.products, context.regions)
    # Freeze at deal 50's creation: its rows use the tables, every other deal falls back to the index.
    frozen = pairs.frozen_at(context, int(batch.created_seconds[50]))
    assert isinstance(frozen.outcomes_by_product, pairs.FrozenSums)
    partner_rows = np.arange(len(world.partners))
    for deal in (50, 10, 55):
        deal_rows = np.full(len(partner_rows), deal)
        np.testing.assert_array_equal(
            pairs.pair_feature_matrix(frozen, batch, deal_rows, partner_rows),
            pairs.pair_feature_matrix(context, batch, deal_rows, partner_rows),
        )
    deal_rows, partner_rows = _all_pairs(world)  # many times in one call
    np.testing.assert_array_equal(
        pairs.pair_feature_matrix(frozen, batch, deal_rows, partner_rows),
        pairs.pair_feature_matrix(context, batch, deal_rows, partner_rows),
    )


def test_pair_feature_matrix_counts_rows_by_chunk_without_changing_them(world: schema.Ecosystem) -> None:
    context = pairs.build_feature_context(
        world.partners, world.deals, world.outcomes, world.engagement, _vectors(len(world.partners), 1)
    )
    batch = pairs.deal_batch(world.deals, _vectors(len(world.deals), 2), context.products, context.regions)
    deal_rows, partner_rows = _all_pairs(world)
    progress = RecordingProgress()
    chunked = pairs.pair_feature_matrix(context, batch, deal_rows, partner_rows, chunk_rows=500, progress=progress)
    rows = len(deal_rows)
    assert progress.counts == [(min(stop, rows), rows) for stop in range(500, rows + 500, 500)]
    np.testing.assert_array_equal(chunked, pairs.pair_feature_matrix(context, batch, deal_rows, partner_rows))


def test_events_layered_on_a_frozen_history_equal_a_context_built_from_scratch(world: schema.Ecosystem) -> None:
    cut = world.outcomes[schema.CLOSED_AT].quantile(0.6)
    earlier, later = (
        world.outcomes[world.outcomes[schema.CLOSED_AT] < cut],
        world.outcomes[world.outcomes[schema.CLOSED_AT] >= cut],
    )
    engaged_early = world.engagement[world.engagement[schema.OCCURRED_AT] < cut]
    engaged_late = world.engagement[world.engagement[schema.OCCURRED_AT] >= cut]
    assert len(later) and len(engaged_late), "the fixture must leave events after the cut"
    vectors = _vectors(len(world.partners), 1)
    vocabulary = pairs.vocabularies(world.partners, world.deals)
    base = pairs.build_feature_context(world.partners, world.deals, earlier, engaged_early, vectors, vocabulary)
    frozen = pairs.frozen_at(base, int(pairs.to_seconds([base.history_end])[0]) + 1)
    live = pairs.with_events(frozen, world.deals, later, engaged_late)
    full = pairs.build_feature_context(
        world.partners, world.deals, world.outcomes, world.engagement, vectors, vocabulary
    )
    assert live.history_end == full.history_end > base.history_end
    batch = pairs.deal_batch(world.deals, _vectors(len(world.deals), 2), full.products, full.regions)
    now = batch.created_seconds.max() + 86_400
    late_batch = pairs.DealBatch(
        batch.region_index, batch.product_mask, batch.amount, np.full_like(batch.created_seconds, now), batch.vectors
    )
    for deals in (batch, late_batch):  # at the deals' own times, and all "now" after every event
        deal_rows, partner_rows = _all_pairs(world)
        expected = pairs.pair_feature_matrix(full, deals, deal_rows, partner_rows)
        np.testing.assert_allclose(
            pairs.pair_feature_matrix(live, deals, deal_rows, partner_rows), expected, rtol=1e-6, atol=1e-5
        )
    without = pairs.pair_feature_matrix(frozen, late_batch, *_all_pairs(world))
    assert not np.allclose(without, pairs.pair_feature_matrix(live, late_batch, *_all_pairs(world))), "events count"


def test_no_events_leave_the_context_as_it_was(world: schema.Ecosystem) -> None:
    context = pairs.build_feature_context(
        world.partners, world.deals, world.outcomes, world.engagement, _vectors(len(world.partners), 1)
    )
    unchanged = pairs.with_events(context, world.deals, world.outcomes.iloc[:0], world.engagement.iloc[:0])
    assert unchanged.history_end == context.history_end
    batch = pairs.deal_batch(world.deals, _vectors(len(world.deals), 2), context.products, context.regions)
    np.testing.assert_array_equal(
        pairs.pair_feature_matrix(unchanged, batch, *_all_pairs(world)),
        pairs.pair_feature_matrix(context, batch, *_all_pairs(world)),
    )
