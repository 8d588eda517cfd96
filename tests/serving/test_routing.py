"""Routing logic on a small synthetic world: ranking, retrieval recall, constraints, channel conflict,
domain errors. No HTTP, no registry (see test_service.py for those)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from features.pairs import FEATURE_REASONS, FeatureError
from features.schema import parse_certifications, split_list
from serving.routing import Router, RoutingConflictError, RoutingSettings, UnknownPartnerError
from serving.schemas import REASONS_PER_PARTNER, RouteRequest, RouteResponse
from tests.serving.conftest import World, deal_body

RECALL_DEALS = 25


def request(deal: dict[str, Any], **options: Any) -> RouteRequest:
    return RouteRequest.model_validate({"deal": deal, "options": options})


def partner_row(world: World, partner_id: str) -> Any:
    return world.partners.set_index("partner_id").loc[partner_id]


def ids(response: RouteResponse) -> list[str]:
    return [partner.partner_id for partner in response.partners]


def test_response_ranks_explains_and_names_the_model(synthetic_world: World) -> None:
    response = synthetic_world.router.route(request(deal_body(synthetic_world.deals, 0), max_results=5))
    assert [partner.rank for partner in response.partners] == [1, 2, 3, 4, 5]
    probabilities = [partner.win_probability for partner in response.partners]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0.0 <= probability <= 1.0 for probability in probabilities)
    for partner in response.partners:
        assert len(partner.reasons) == REASONS_PER_PARTNER
        for reason in partner.reasons:
            assert reason.text == FEATURE_REASONS[reason.feature][0 if reason.contribution >= 0 else 1]
        assert partner.name and not partner.registered
    assert response.model.version == "test"
    assert response.features_as_of == synthetic_world.router.context.history_end.to_pydatetime()
    assert response.deal_id == str(synthetic_world.deals.iloc[0]["deal_id"])
    assert response.channel_conflict is None
    assert len(response.decision_id) == 32


def test_same_request_same_ranking_new_decision(synthetic_world: World) -> None:
    routed = request(deal_body(synthetic_world.deals, 1), max_results=8)
    first, second = synthetic_world.router.route(routed), synthetic_world.router.route(routed)
    assert ids(first) == ids(second)
    assert first.decision_id != second.decision_id


def test_small_catalogue_scores_every_eligible_partner(synthetic_world: World) -> None:
    response = synthetic_world.router.route(request(deal_body(synthetic_world.deals, 2)))
    assert response.candidates.source == "all_eligible"
    assert response.candidates.scored == response.candidates.eligible_partners


def test_retrieval_finds_brute_force_top_10(synthetic_world: World) -> None:
    """Text neighbours + history shortlist hold >= 95% of the exact top 10 (the service target)."""
    recalls = []
    for row in range(0, 40 * RECALL_DEALS, 40):
        routed = request(deal_body(synthetic_world.deals, row), max_results=10)
        fast = synthetic_world.retrieval_router.route(routed)
        exact = synthetic_world.retrieval_router.route(routed, exhaustive=True)
        assert fast.candidates.source == "retrieval"
        assert fast.candidates.scored < exact.candidates.scored
        recalls.append(len(set(ids(fast)) & set(ids(exact))) / len(exact.partners))
    assert np.mean(recalls) >= 0.95


def test_every_partner_brute_force_agrees_with_the_eligible_scan(synthetic_world: World) -> None:
    router = synthetic_world.retrieval_router
    routed = request(deal_body(synthetic_world.deals, 5), max_results=10, respect_capacity=True)
    probabilities, eligible = router.score_every_partner(routed)
    assert probabilities.shape == eligible.shape == (len(synthetic_world.partners),)
    assert 10 < eligible.sum() < len(eligible)
    rows = np.flatnonzero(eligible)
    order = np.lexsort((router.context.partner_ids[rows], -probabilities[rows]))[:10]
    exact = router.route(routed, exhaustive=True)
    assert ids(exact) == list(router.context.partner_ids[rows[order]])
    np.testing.assert_allclose([partner.win_probability for partner in exact.partners], probabilities[rows[order]])


def test_constraints_hold_for_every_returned_partner(synthetic_world: World) -> None:
    deal = deal_body(synthetic_world.deals, 3)
    product = deal["products"][0]
    everyone = synthetic_world.router.route(request(deal, max_results=3))
    excluded = ids(everyone)[:2]
    response = synthetic_world.retrieval_router.route(
        request(
            deal,
            max_results=10,
            required_certifications=[{"product": product, "min_level": 2}],
            allowed_regions=[deal["region"], "nordics"],
            excluded_partner_ids=excluded,
        )
    )
    for partner in response.partners:
        row = partner_row(synthetic_world, partner.partner_id)
        assert parse_certifications(row["certifications"]).get(product, 0) >= 2
        assert set(split_list(row["regions"])) & {deal["region"], "nordics"}
        assert partner.partner_id not in excluded
    names = [report.name for report in response.constraints]
    assert names == ["region", "certifications", "excluded", "capacity"]
    removed = sum(report.removed for report in response.constraints)
    assert removed <= response.candidates.retrieved


def test_capacity_constraint_is_optional(synthetic_world: World) -> None:
    deal = deal_body(synthetic_world.deals, 4)
    strict = synthetic_world.router.route(request(deal))
    relaxed = synthetic_world.router.route(request(deal, respect_capacity=False))
    assert "capacity" in [report.name for report in strict.constraints]
    assert "capacity" not in [report.name for report in relaxed.constraints]
    assert relaxed.candidates.eligible_partners >= strict.candidates.eligible_partners


def test_candidate_pool_is_routed_exactly(synthetic_world: World) -> None:
    deal = deal_body(synthetic_world.deals, 5)
    pool = synthetic_world.partners["partner_id"].tolist()[:40]
    response = synthetic_world.router.route(request(deal, candidate_pool=pool, respect_capacity=False))
    assert response.candidates.source == "candidate_pool"
    assert set(ids(response)) <= set(pool)
    assert response.candidates.retrieved == len(pool)


def test_top_up_when_retrieval_keeps_too_few(synthetic_world: World) -> None:
    """When retrieval keeps fewer partners than asked for, the closest eligible ones fill the list."""
    router = synthetic_world.retrieval_router
    narrow = Router(
        model=router.model,
        context=router.context,
        index=router.index,
        encoder=router.encoder,
        partners=synthetic_world.partners,
        history_deals=synthetic_world.deals,
        model_info=router.model_info,
        settings=RoutingSettings(text_neighbours=1, shortlist_size=1, exhaustive_limit=0),
    )
    response = narrow.route(request(deal_body(synthetic_world.deals, 6), max_results=10))
    assert len(response.partners) == 10
    assert response.candidates.scored > response.candidates.retrieved


@pytest.mark.parametrize(
    ("deal_changes", "options", "field", "error"),
    [
        ({"region": "atlantis"}, {}, "deal.region", FeatureError),
        ({"products": ["firewall", "warp-drive"]}, {}, "deal.products", FeatureError),
        ({}, {"allowed_regions": ["atlantis"]}, "options.allowed_regions", FeatureError),
        ({}, {"required_certifications": [{"product": "warp-drive"}]}, "options.required_certifications", FeatureError),
        ({}, {"candidate_pool": ["P000001", "NOPE"]}, "options.candidate_pool", UnknownPartnerError),
        ({}, {"excluded_partner_ids": ["NOPE"]}, "options.excluded_partner_ids", UnknownPartnerError),
        ({"registered_partner_id": "NOPE"}, {}, "deal.registered_partner_id", UnknownPartnerError),
    ],
)
def test_domain_errors_name_the_field(
    synthetic_world: World,
    deal_changes: dict[str, Any],
    options: dict[str, Any],
    field: str,
    error: type[FeatureError],
) -> None:
    with pytest.raises(error) as raised:
        synthetic_world.router.route(request(deal_body(synthetic_world.deals, 7, **deal_changes), **options))
    assert raised.value.field == field
    assert raised.value.reason


def test_no_eligible_partner_is_a_conflict_not_an_empty_answer(synthetic_world: World) -> None:
    deal = deal_body(synthetic_world.deals, 8)
    everyone = synthetic_world.partners["partner_id"].tolist()
    with pytest.raises(RoutingConflictError) as raised:
        synthetic_world.router.route(request(deal, excluded_partner_ids=everyone))
    assert raised.value.field == "options"
    assert "excluded" in raised.value.reason
    pool = everyone[:3]
    with pytest.raises(RoutingConflictError) as raised:
        synthetic_world.router.route(request(deal, candidate_pool=pool, excluded_partner_ids=pool))
    assert raised.value.field == "options.candidate_pool"


def test_registered_partner_is_protected_at_rank_1(synthetic_world: World) -> None:
    deal = deal_body(synthetic_world.deals, 9)
    on_merit = synthetic_world.router.route(request(deal, max_results=10, respect_capacity=False))
    registered = ids(on_merit)[4]  # rank 5 on merit
    response = synthetic_world.router.route(
        request(deal | {"registered_partner_id": registered}, max_results=5, respect_capacity=False)
    )
    assert ids(response)[0] == registered
    assert response.partners[0].registered
    assert ids(response)[1:] == [pid for pid in ids(on_merit) if pid != registered][:4]
    conflict = response.channel_conflict
    assert conflict is not None
    assert conflict.status == "protected"
    assert conflict.merit_rank == 5
    assert conflict.displaced_partner_id == ids(on_merit)[0]


def test_protection_holds_even_against_constraints(synthetic_world: World) -> None:
    deal = deal_body(synthetic_world.deals, 10)
    outsider = synthetic_world.partners[
        ~synthetic_world.partners["regions"].str.contains(deal["region"], regex=False)
    ].iloc[0]["partner_id"]
    response = synthetic_world.router.route(request(deal | {"registered_partner_id": outsider}))
    assert ids(response)[0] == outsider
    assert response.channel_conflict is not None
    assert response.channel_conflict.merit_rank is None
    assert "region" in response.channel_conflict.message


def test_override_ranks_the_registered_partner_on_merit(synthetic_world: World) -> None:
    deal = deal_body(synthetic_world.deals, 11)
    on_merit = synthetic_world.router.route(request(deal, max_results=10, respect_capacity=False))
    registered = ids(on_merit)[6]
    response = synthetic_world.router.route(
        request(
            deal | {"registered_partner_id": registered},
            max_results=10,
            respect_capacity=False,
            override_registration=True,
        )
    )
    assert ids(response) == ids(on_merit)
    assert response.partners[6].registered
    conflict = response.channel_conflict
    assert conflict is not None
    assert (conflict.status, conflict.merit_rank, conflict.displaced_partner_id) == ("overridden", 7, None)


def test_excluding_a_protected_partner_is_a_conflict(synthetic_world: World) -> None:
    registered = synthetic_world.partners["partner_id"].iloc[0]
    deal = deal_body(synthetic_world.deals, 12, registered_partner_id=registered)
    with pytest.raises(RoutingConflictError) as raised:
        synthetic_world.router.route(request(deal, excluded_partner_ids=[registered]))
    assert raised.value.field == "options.excluded_partner_ids"
    response = synthetic_world.router.route(
        request(deal, excluded_partner_ids=[registered], override_registration=True)
    )
    assert registered not in ids(response)


@pytest.mark.parametrize(
    ("deal_changes", "options", "location"),
    [
        ({"amount": 0}, {}, ("deal", "amount")),
        ({"amount": float("nan")}, {}, ("deal", "amount")),
        ({"products": []}, {}, ("deal", "products")),
        ({"products": ["firewall", "firewall"]}, {}, ("deal", "products")),
        ({"requirement_text": "  "}, {}, ("deal", "requirement_text")),
        ({}, {"max_results": 0}, ("options", "max_results")),
        ({}, {"max_results": 51}, ("options", "max_results")),
        ({}, {"candidate_pool": []}, ("options", "candidate_pool")),
        ({}, {"maximum_results": 3}, ("options", "maximum_results")),
    ],
)
def test_schema_rejects_bad_input(
    synthetic_world: World, deal_changes: dict[str, Any], options: dict[str, Any], location: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as raised:
        request(deal_body(synthetic_world.deals, 0, **deal_changes), **options)
    assert raised.value.errors()[0]["loc"] == location
