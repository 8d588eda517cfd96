"""Each routing stage alone, on the 400-partner fixture world: load-time state, request parsing,
retrieve, constrain, top_up, featurise, score, rank, explain and channel-conflict resolution."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from features.embed import HashingEncoder
from features.pairs import FEATURE_COLUMNS, LOAD_RATIO, DealBatch
from serving.routing import Router, RoutingConflictError
from serving.routing.request import ParsedRequest, parse_request
from serving.routing.stages import (
    CandidateFeatures,
    EligibleCandidates,
    ScoredCandidates,
    ScoredPartner,
    constrain,
    explain,
    featurise,
    no_partner_left,
    rank,
    resolve_channel_conflict,
    retrieve,
    score,
    top_up,
)
from serving.routing.state import RoutingState, build_routing_state, single_deal, single_deal_features
from serving.schemas import RouteRequest
from tests.serving.conftest import World, deal_body


def request(deal: dict[str, Any], **options: Any) -> RouteRequest:
    return RouteRequest.model_validate({"deal": deal, "options": options})


def retrieval_state(world: World) -> RoutingState:
    """Budgets 20 + 20, retrieval forced (see conftest)."""
    return world.retrieval_router.state


def parsed_and_query(state: RoutingState, routed: RouteRequest) -> tuple[ParsedRequest, np.ndarray]:
    parsed = parse_request(state, routed)
    return parsed, state.encoder.encode([parsed.requirement_text])[0]


def row_of(state: RoutingState, partner_id: str) -> int:
    return state.context.partner_position[partner_id]


def outside_region(world: World, region: str) -> str:
    """A partner that does not operate in `region`."""
    return str(world.partners[~world.partners["regions"].str.contains(region, regex=False)].iloc[0]["partner_id"])


def single_deal_at(state: RoutingState) -> DealBatch:
    """A one-product deal in the first region, as of the state's time."""
    products = np.arange(len(state.context.products)) == 0
    return single_deal(state.as_of_seconds, 0, products, 1e5, state.context.partner_vectors[0])


def deal_in_first_region(state: RoutingState) -> dict[str, Any]:
    return {
        "requirement_text": "firewall rollout",
        "products": [state.context.products[0]],
        "region": state.context.regions[0],
        "amount": 1e5,
        "segment": "enterprise",
    }


# --- load-time state --------------------------------------------------------------------------------


def test_state_precomputes_load_ratio_and_a_shortlist_per_region(synthetic_world: World) -> None:
    state = retrieval_state(synthetic_world)
    context = state.context
    every_row = np.arange(len(context.partner_ids))
    deal = single_deal(state.as_of_seconds, 1, np.arange(len(context.products)) == 1, 5e4, context.partner_vectors[3])
    load = single_deal_features(context, deal, every_row)[:, FEATURE_COLUMNS.index(LOAD_RATIO)]
    np.testing.assert_allclose(state.load_ratio, load)  # deal-independent
    for region in range(len(context.regions)):
        operating = np.flatnonzero(context.partner_regions[:, region])
        shortlist = state.shortlist_logits[region]
        np.testing.assert_array_equal(shortlist.rows, operating)
        assert shortlist.logits.shape == (len(operating), len(context.products))
        assert np.isfinite(shortlist.logits).all()
    assert state.as_of_seconds > context.history_end.timestamp()
    for array in (state.load_ratio, state.index_rows, state.partner_names, state.shortlist_logits[0].logits):
        assert not array.flags.writeable
    with pytest.raises(TypeError):
        state.region_positions["atlantis"] = 0  # type: ignore[index]


def test_state_rejects_an_encoder_of_another_dimension(synthetic_world: World) -> None:
    state = retrieval_state(synthetic_world)
    with pytest.raises(ValueError, match="64-d vectors"):
        build_routing_state(
            state.model,
            state.context,
            state.index,
            HashingEncoder(64),
            synthetic_world.partners,
            synthetic_world.deals,
            state.model_info,
            state.settings,
        )


# --- request validation -----------------------------------------------------------------------------


def test_parse_request_names_the_protected_partner_unless_overridden(synthetic_world: World) -> None:
    state = retrieval_state(synthetic_world)
    registered = str(synthetic_world.partners["partner_id"].iloc[7])
    deal = deal_body(synthetic_world.deals, 20, registered_partner_id=registered)
    protected = parse_request(state, request(deal, allowed_regions=[deal["region"], "nordics"]))
    assert protected.registered_row == protected.protected_row == row_of(state, registered)
    assert protected.allowed_regions == (state.region_positions[deal["region"]], state.region_positions["nordics"])
    assert [state.context.products[p] for p in np.flatnonzero(protected.products)] == sorted(deal["products"])
    assert [constraint.name for constraint in protected.constraints] == ["region", "capacity"]
    np.testing.assert_array_equal(protected.eligible, protected.constraints[0].passes & protected.constraints[1].passes)
    overridden = parse_request(state, request(deal, override_registration=True))
    assert (overridden.registered_row, overridden.protected_row) == (row_of(state, registered), None)


# --- retrieve ---------------------------------------------------------------------------------------


def test_retrieve_returns_text_neighbours_shortlist_and_registered_partner(synthetic_world: World) -> None:
    state = retrieval_state(synthetic_world)
    registered = outside_region(synthetic_world, deal_body(synthetic_world.deals, 21)["region"])
    routed = request(deal_body(synthetic_world.deals, 21, registered_partner_id=registered), max_results=10)
    parsed, query = parsed_and_query(state, routed)
    retrieved = retrieve(state, parsed, query, exhaustive=False)
    assert retrieved.source == "retrieval"
    # Text neighbours: the 20 partners of highest profile . requirement similarity (the index is exact here).
    similarity = state.context.partner_vectors @ query
    assert len(retrieved.text_neighbour_rows) == state.settings.text_neighbours
    np.testing.assert_allclose(
        np.sort(similarity[retrieved.text_neighbour_rows]), np.sort(similarity)[-state.settings.text_neighbours :]
    )
    # History shortlist: the 20 partners of the deal's region with the highest mean prototype log-odds.
    shortlist = state.shortlist_logits[parsed.region]
    proxy = shortlist.logits[:, parsed.products].mean(axis=1)
    assert len(retrieved.history_shortlist_rows) == state.settings.shortlist_size
    np.testing.assert_allclose(
        np.sort(proxy[np.searchsorted(shortlist.rows, retrieved.history_shortlist_rows)]),
        np.sort(proxy)[-state.settings.shortlist_size :],
    )
    union = set(retrieved.text_neighbour_rows) | set(retrieved.history_shortlist_rows) | {row_of(state, registered)}
    assert list(retrieved.rows) == sorted(union)


def test_retrieve_takes_the_pool_or_every_eligible_partner_as_they_are(synthetic_world: World) -> None:
    state = retrieval_state(synthetic_world)
    pool = synthetic_world.partners["partner_id"].tolist()[50:80]
    parsed, query = parsed_and_query(state, request(deal_body(synthetic_world.deals, 22), candidate_pool=pool))
    pooled = retrieve(state, parsed, query, exhaustive=False)
    assert pooled.source == "candidate_pool"
    np.testing.assert_array_equal(pooled.rows, [row_of(state, partner_id) for partner_id in pool])
    exhaustive = retrieve(state, replace(parsed, candidate_pool=None), query, exhaustive=True)
    assert exhaustive.source == "all_eligible"
    np.testing.assert_array_equal(exhaustive.rows, np.flatnonzero(parsed.eligible))
    assert len(exhaustive.text_neighbour_rows) == len(exhaustive.history_shortlist_rows) == 0


# --- constrain, top_up ------------------------------------------------------------------------------


def test_constrain_removes_exactly_the_failing_partners_and_counts_them(synthetic_world: World) -> None:
    state = retrieval_state(synthetic_world)
    deal = deal_body(synthetic_world.deals, 23)
    excluded = synthetic_world.partners["partner_id"].tolist()[:100]
    routed = request(
        deal, required_certifications=[{"product": deal["products"][0], "min_level": 2}], excluded_partner_ids=excluded
    )
    parsed, query = parsed_and_query(state, routed)
    retrieved = retrieve(state, parsed, query, exhaustive=False)
    eligible = constrain(parsed, retrieved)
    np.testing.assert_array_equal(eligible.rows, retrieved.rows[parsed.eligible[retrieved.rows]])
    assert [report.name for report in eligible.reports] == ["region", "certifications", "excluded", "capacity"]
    remaining = retrieved.rows
    for constraint, report in zip(parsed.constraints, eligible.reports, strict=True):
        failing = ~constraint.passes[remaining]
        assert report.removed == failing.sum()
        remaining = remaining[~failing]
    assert sum(report.removed for report in eligible.reports) == len(retrieved.rows) - len(eligible.rows) > 0


def test_constrain_leaves_the_protected_partner_out_uncounted(synthetic_world: World) -> None:
    state = retrieval_state(synthetic_world)
    deal = deal_body(synthetic_world.deals, 24)
    outsider = outside_region(synthetic_world, deal["region"])
    protected, query = parsed_and_query(state, request(deal | {"registered_partner_id": outsider}))
    overridden = replace(protected, protected_row=None)
    retrieved = retrieve(state, protected, query, exhaustive=False)
    assert row_of(state, outsider) in retrieved.rows
    kept, on_merit = constrain(protected, retrieved), constrain(overridden, retrieved)
    np.testing.assert_array_equal(kept.rows, on_merit.rows)  # it fails the region either way
    assert kept.reports[0].removed == on_merit.reports[0].removed - 1


def test_top_up_adds_the_closest_eligible_partners_but_never_the_protected_one(synthetic_world: World) -> None:
    state = retrieval_state(synthetic_world)
    deal = deal_body(synthetic_world.deals, 25)
    parsed, query = parsed_and_query(state, request(deal, max_results=30))
    eligible_rows = np.flatnonzero(parsed.eligible)
    similarity = state.context.partner_vectors @ query
    by_similarity = eligible_rows[np.argsort(-similarity[eligible_rows], kind="stable")]
    start = EligibleCandidates(by_similarity[:2], ())
    topped = top_up(state, parsed, start, query)
    count = max(state.settings.text_neighbours, parsed.max_results)
    np.testing.assert_array_equal(topped.rows, by_similarity[: 2 + count])
    protected = replace(parsed, registered_row=int(by_similarity[2]), protected_row=int(by_similarity[2]))
    topped = top_up(state, protected, start, query)
    assert by_similarity[2] not in topped.rows
    np.testing.assert_array_equal(topped.rows[2:], np.delete(by_similarity, 2)[2 : 2 + count])
    enough = EligibleCandidates(by_similarity[:30], ())
    assert top_up(state, parsed, enough, query) is enough


def test_router_never_returns_the_protected_partner_twice(synthetic_world: World) -> None:
    """The top-up once let the protected partner back in among the candidates (ranked twice)."""
    router = synthetic_world.retrieval_router
    narrow = Router(
        model=router.model,
        context=router.context,
        index=router.index,
        encoder=router.encoder,
        partners=synthetic_world.partners,
        history_deals=synthetic_world.deals,
        model_info=router.model_info,
        settings=replace(router.settings, text_neighbours=1, shortlist_size=1),
    )
    deal = deal_body(synthetic_world.deals, 0)
    on_merit = narrow.route(request(deal, max_results=10))
    for partner in on_merit.partners:
        routed = narrow.route(request(deal | {"registered_partner_id": partner.partner_id}, max_results=10))
        ranked = [ranked.partner_id for ranked in routed.partners]
        assert ranked[0] == partner.partner_id
        assert len(set(ranked)) == len(ranked) == 10


def test_no_partner_left_says_what_each_constraint_leaves(synthetic_world: World) -> None:
    state = retrieval_state(synthetic_world)
    everyone = synthetic_world.partners["partner_id"].tolist()
    parsed = parse_request(state, request(deal_body(synthetic_world.deals, 26), excluded_partner_ids=everyone))
    error = no_partner_left(state, parsed)
    assert isinstance(error, RoutingConflictError)
    assert error.field == "options"
    assert "among the catalogue" in error.reason and "excluded" in error.reason and "leaves 0" in error.reason


# --- featurise, score, rank, explain ----------------------------------------------------------------


def test_featurise_and_score_keep_the_protected_partner_apart(synthetic_world: World) -> None:
    state = retrieval_state(synthetic_world)
    deal = deal_body(synthetic_world.deals, 27)
    outsider = outside_region(synthetic_world, deal["region"])
    parsed, query = parsed_and_query(state, request(deal | {"registered_partner_id": outsider}))
    eligible = constrain(parsed, retrieve(state, parsed, query, exhaustive=False))
    features = featurise(state, parsed, query, eligible)
    single = single_deal(state.as_of_seconds, parsed.region, parsed.products, parsed.amount, query)
    np.testing.assert_array_equal(features.features, single_deal_features(state.context, single, eligible.rows))
    assert features.protected is not None and features.protected.row == row_of(state, outsider)
    np.testing.assert_array_equal(
        features.protected.features, single_deal_features(state.context, single, np.array([row_of(state, outsider)]))[0]
    )
    scored = score(state, features)
    assert scored.count == len(eligible.rows) + 1
    assert sorted(scored.rows) == sorted(eligible.rows)
    assert np.all(np.diff(scored.win_probability) <= 0)
    expected = state.model.predict_win_probability(features.features)
    np.testing.assert_allclose(np.sort(scored.win_probability), np.sort(expected))
    assert scored.protected is not None
    assert scored.protected.win_probability == pytest.approx(
        state.model.predict_win_probability(features.protected.features.reshape(1, -1))[0]
    )


def test_score_breaks_ties_by_partner_id(synthetic_world: World) -> None:
    state = retrieval_state(synthetic_world)
    rows = np.array([30, 10, 20], dtype=np.int64)
    same = np.repeat(single_deal_features(state.context, single_deal_at(state), rows[:1]), 3, axis=0)
    scored = score(state, CandidateFeatures(rows, same, None))
    np.testing.assert_array_equal(scored.rows, rows[np.argsort(state.context.partner_ids[rows])])
    assert scored.protected is None and scored.count == 3


def scored_by_hand(protected: ScoredPartner | None) -> ScoredCandidates:
    """Five candidates (rows 10..14) in merit order with win probabilities 0.9 .. 0.5."""
    return ScoredCandidates(
        rows=np.arange(10, 15, dtype=np.int64),
        features=np.arange(5 * len(FEATURE_COLUMNS), dtype=np.float32).reshape(5, -1),
        win_probability=np.array([0.9, 0.8, 0.7, 0.6, 0.5]),
        protected=protected,
    )


def test_rank_puts_the_protected_partner_first_then_merit() -> None:
    protected = ScoredPartner(row=3, features=np.full(len(FEATURE_COLUMNS), -1, dtype=np.float32), win_probability=0.1)
    ranked = rank(scored_by_hand(protected), max_results=3)
    np.testing.assert_array_equal(ranked.rows, [3, 10, 11])
    np.testing.assert_array_equal(ranked.win_probability, [0.1, 0.9, 0.8])
    np.testing.assert_array_equal(ranked.features[0], protected.features)
    np.testing.assert_array_equal(ranked.features[1:], scored_by_hand(None).features[:2])
    assert list(rank(scored_by_hand(None), max_results=3).rows) == [10, 11, 12]
    assert list(rank(scored_by_hand(protected), max_results=1).rows) == [3]


def test_explain_names_ranks_and_the_registered_partner(synthetic_world: World) -> None:
    state = retrieval_state(synthetic_world)
    rows = np.array([5, 6], dtype=np.int64)
    features = single_deal_features(state.context, single_deal_at(state), rows)
    probabilities = state.model.predict_win_probability(features)
    ranked = rank(ScoredCandidates(rows, features, probabilities, None), max_results=2)
    partners = explain(state, ranked, registered_row=6)
    assert [(partner.rank, partner.partner_id) for partner in partners] == [
        (1, state.context.partner_ids[5]),
        (2, state.context.partner_ids[6]),
    ]
    assert [partner.registered for partner in partners] == [False, True]
    assert [partner.name for partner in partners] == list(state.partner_names[rows])
    contributions = [abs(reason.contribution) for reason in partners[0].reasons]
    assert contributions == sorted(contributions, reverse=True)


# --- channel conflict -------------------------------------------------------------------------------


def conflict_request(state: RoutingState, registered: int, protected: bool, failing: bool) -> ParsedRequest:
    """A parsed request whose only constraint (region) the registered row passes or fails."""
    base = parse_request(state, request(deal_in_first_region(state), respect_capacity=False))
    passes = np.ones(len(state.context.partner_ids), dtype=bool)
    passes[registered] = not failing
    return replace(
        base,
        constraints=(replace(base.constraints[0], passes=passes),),
        eligible=passes,
        registered_row=registered,
        protected_row=registered if protected else None,
    )


def test_conflict_is_none_without_registration(synthetic_world: World) -> None:
    state = retrieval_state(synthetic_world)
    parsed = parse_request(state, request(deal_in_first_region(state)))
    assert resolve_channel_conflict(state, parsed, scored_by_hand(None)) is None


def test_protected_partner_gets_its_merit_rank_and_displaces_the_best(synthetic_world: World) -> None:
    state = retrieval_state(synthetic_world)
    features = np.zeros(len(FEATURE_COLUMNS), dtype=np.float32)
    scored = scored_by_hand(ScoredPartner(row=3, features=features, win_probability=0.75))
    conflict = resolve_channel_conflict(state, conflict_request(state, 3, protected=True, failing=False), scored)
    assert conflict is not None
    assert (conflict.status, conflict.merit_rank) == ("protected", 3)
    assert conflict.displaced_partner_id == state.context.partner_ids[10]
    assert conflict.message == f"deal registered by {state.context.partner_ids[3]}: protected at rank 1"
    best = scored_by_hand(ScoredPartner(row=3, features=features, win_probability=0.95))
    conflict = resolve_channel_conflict(state, conflict_request(state, 3, protected=True, failing=False), best)
    assert conflict is not None and (conflict.merit_rank, conflict.displaced_partner_id) == (1, None)


def test_protected_partner_failing_a_constraint_has_no_merit_rank(synthetic_world: World) -> None:
    state = retrieval_state(synthetic_world)
    scored = scored_by_hand(ScoredPartner(row=3, features=np.zeros(len(FEATURE_COLUMNS)), win_probability=0.95))
    conflict = resolve_channel_conflict(state, conflict_request(state, 3, protected=True, failing=True), scored)
    assert conflict is not None
    assert (conflict.status, conflict.merit_rank) == ("protected", None)
    assert conflict.displaced_partner_id == state.context.partner_ids[10]
    assert conflict.message.endswith("protected at rank 1 although it fails region")


def test_overridden_partner_is_ranked_on_merit_or_said_left_out(synthetic_world: World) -> None:
    state = retrieval_state(synthetic_world)
    scored = scored_by_hand(None)
    among = resolve_channel_conflict(state, conflict_request(state, 12, protected=False, failing=False), scored)
    assert among is not None
    assert (among.status, among.merit_rank, among.displaced_partner_id) == ("overridden", 3, None)
    assert among.message.endswith("ranked on merit (rank 3)")
    failing = resolve_channel_conflict(state, conflict_request(state, 3, protected=False, failing=True), scored)
    assert failing is not None and failing.merit_rank is None
    assert failing.message.endswith("(left out: fails region)")
    unretrieved = resolve_channel_conflict(state, conflict_request(state, 3, protected=False, failing=False), scored)
    assert unretrieved is not None and unretrieved.merit_rank is None
    assert unretrieved.message.endswith("(not among the retrieved candidates)")
