"""`POST /ipp_fit` and `GET /white_space` through the ASGI app with the smoke IPP champion: fits with
evidence and reasons, errors naming the item and field, kept prospect lists per key, 503 without a
model, scopes; and the documented profile pattern against the rule that checks profiles."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import bentoml
import pytest

from features.prospects import prospect_from_fields
from serving.ipp import MISSING_MODEL_REASON
from serving.ipp_schemas import MAX_PROSPECTS_PER_REQUEST, PROFILE_PATTERN
from serving.keys import Scope
from tests.serving.conftest import UNLIMITED

PROSPECT: dict[str, Any] = {
    "prospect_id": "acme",
    "profile_text": "Acme Networks deploys next-generation firewall and SD-WAN for mid-market firms across DACH.",
    "products": ["firewall", "sd-wan"],
    "certifications": {"firewall": 2},
    "regions": ["dach", "nordics"],
    "capacity": 6,
}
OTHER: dict[str, Any] = {
    "profile_text": "Cloud migration and data backup for retailers, with managed storage.",
    "products": ["cloud-migration", "data-backup", "storage"],
    "regions": ["na-east"],
    "capacity": 3,
}


def fit(client: Any, *prospects: dict[str, Any], **options: Any) -> Any:
    return client.post("/ipp_fit", json={"prospects": list(prospects), **options})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def ipp_token(key_store: Any) -> str:
    """A key with only the `ipp` scope."""
    from serving.ratelimit import RateLimit

    return str(key_store.create("recruiter", {Scope.IPP}, RateLimit(**UNLIMITED)).token)


def test_one_prospect_gets_fit_percentile_evidence_reasons_and_the_model(client: Any) -> None:
    response = fit(client, PROSPECT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "partnermatch-ipp", "version": "1", "encoder": "hashing-32"}
    assert body["kept"] is False
    (scored,) = body["prospects"]
    assert scored["prospect_id"] == "acme"
    assert 0.0 <= scored["fit_score"] <= 100.0
    assert 0.0 <= scored["percentile"] <= 100.0
    assert 1 <= len(scored["nearest_top_performers"]) <= 3
    assert all(-1.0 <= item["similarity"] <= 1.0 for item in scored["nearest_top_performers"])
    assert scored["raises"] or scored["lowers"]
    assert all(reason["contribution"] > 0 for reason in scored["raises"])
    assert all(reason["contribution"] < 0 for reason in scored["lowers"])
    assert all(
        cell["product"] in PROSPECT["products"] and cell["region"] in PROSPECT["regions"]
        for cell in scored["white_space"]
    )
    days = scored["expected_days_to_first_win"]
    assert days is None or 0 < days <= scored["first_win_observed_days"]


def test_a_batch_keeps_its_order_and_ids_default_to_the_index(client: Any) -> None:
    alone = fit(client, OTHER).json()["prospects"][0]
    batch = fit(client, PROSPECT, OTHER).json()["prospects"]
    assert [item["prospect_id"] for item in batch] == ["acme", "1"]
    assert batch[1]["fit_score"] == pytest.approx(alone["fit_score"])  # scored alone or in a batch alike


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"profile_text": ""}, "prospects.1.profile_text", "missing or empty"),
        ({"profile_text": "ok ?? 1"}, "prospects.1.profile_text", "fewer than 3 words"),
        ({"products": ["firewall", "teleport"]}, "prospects.1.products", "unknown product 'teleport'"),
        ({"regions": ["mars"]}, "prospects.1.regions", "unknown region 'mars'"),
        ({"certifications": {"teleport": 1}}, "prospects.1.certifications", "unknown product 'teleport'"),
    ],
)
def test_an_unusable_prospect_is_422_naming_its_index_and_field(
    client: Any, change: dict[str, Any], field: str, reason: str
) -> None:
    response = fit(client, PROSPECT, PROSPECT | change)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field and reason in body["reason"]
    assert body["model_version"] == "1"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prospects": []}, "prospects"),
        ({"prospects": [PROSPECT] * (MAX_PROSPECTS_PER_REQUEST + 1)}, "prospects"),
        ({"prospects": [PROSPECT | {"capacity": 0}]}, "prospects.0.capacity"),
        ({"prospects": [PROSPECT | {"certifications": {"firewall": 4}}]}, "prospects.0.certifications.firewall"),
        ({"prospects": [PROSPECT | {"size": 5}]}, "prospects.0.size"),
    ],
)
def test_malformed_batches_are_422_naming_the_field(client: Any, body: dict[str, Any], field: str) -> None:
    response = client.post("/ipp_fit", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_white_space_ranks_cells_and_names_the_kept_prospects_that_fill_them(
    client: Any, key_store: Any, ipp_token: str
) -> None:
    before = client.get("/white_space", headers=bearer(ipp_token))
    assert before.status_code == 200, before.text
    assert before.json()["prospect_list"] is None
    cells = before.json()["cells"]
    assert cells and all(cell["prospects"] == [] for cell in cells)
    excess = [cell["excess_unmet_per_month"] for cell in cells]
    assert excess == sorted(excess, reverse=True) and min(excess) > 0
    assert all(cell["recruit_capacity"] >= 1 and 1 <= cell["recruit_certification_level"] <= 3 for cell in cells)

    # A prospect that sells everything everywhere fills every cell.
    everywhere = PROSPECT | {"products": before.json()["products"], "regions": before.json()["regions"]}
    kept = client.post(
        "/ipp_fit", json={"prospects": [everywhere, OTHER], "keep": True}, headers=bearer(ipp_token)
    ).json()
    assert kept["kept"] is True
    after = client.get("/white_space", headers=bearer(ipp_token)).json()
    assert after["prospect_list"]["prospects"] == 2 and after["prospect_list"]["model_version"] == "1"
    assert all("acme" in [item["prospect_id"] for item in cell["prospects"]] for cell in after["cells"])
    for cell in after["cells"]:
        fits = [item["fit_score"] for item in cell["prospects"]]
        assert fits == sorted(fits, reverse=True)
        fills = cell["product"] in OTHER["products"] and cell["region"] in OTHER["regions"]
        assert ("1" in [item["prospect_id"] for item in cell["prospects"]]) == fills
    # A list belongs to the key that kept it.
    other_key = key_store.create("another recruiter", {Scope.IPP}).token
    assert client.get("/white_space", headers=bearer(other_key)).json()["prospect_list"] is None


def test_a_key_without_the_ipp_scope_is_403(client: Any, key_store: Any) -> None:
    route_only = key_store.create("crm", {Scope.ROUTE}).token
    assert client.post("/ipp_fit", json={"prospects": [PROSPECT]}, headers=bearer(route_only)).status_code == 403
    assert client.get("/white_space", headers=bearer(route_only)).status_code == 403


@pytest.fixture
def without_ipp_model(client: Any) -> Iterator[None]:
    """The running service as if no IPP champion were registered."""
    models = bentoml.get_current_service().models
    saved = models.swap(replace(models.current, ipp=None))
    try:
        yield
    finally:
        models.swap(saved)


@pytest.mark.usefixtures("without_ipp_model")
def test_without_an_ipp_model_both_endpoints_are_503_naming_the_command(client: Any) -> None:
    for response in (fit(client, PROSPECT), client.get("/white_space")):
        assert response.status_code == 503
        assert response.json()["field"] == "model"
        assert "partnermatch train-ipp" in response.json()["reason"] == MISSING_MODEL_REASON


def test_the_documented_profile_pattern_is_the_rule_that_checks_profiles() -> None:
    pattern = re.compile(PROFILE_PATTERN)
    chooser = random.Random(0)
    alphabet = "ab Z-1 é\n.x"
    samples = ["", "ab cd ef", "abcdef", "a b c d", "ab c de f gh", "ab,cd ef", "ab\ncd\nef", "éé ab cd"]
    samples += ["".join(chooser.choice(alphabet) for _ in range(chooser.randint(0, 14))) for _ in range(2000)]
    for text in samples:
        try:
            prospect_from_fields(OTHER | {"profile_text": text}, default_id="0")
            accepted = True
        except ValueError:
            accepted = False
        assert (pattern.search(text) is not None) == accepted, repr(text)


def test_the_contract_documents_both_operations_with_the_ipp_scope(client: Any) -> None:
    spec = client.get("/docs.json").json()
    operation = spec["paths"]["/ipp_fit"]["post"]
    assert "`ipp`" in operation["description"]
    assert set(operation["responses"]) >= {"200", "401", "403", "413", "415", "422", "503"}
    assert not any(parameter["name"] == "Idempotency-Key" for parameter in operation.get("parameters", []))
    prospect = spec["components"]["schemas"]["ProspectIn"]["properties"]
    assert "teleport" not in prospect["products"]["items"]["enum"] and "dach" in prospect["regions"]["items"]["enum"]
    assert prospect["profile_text"]["pattern"] == PROFILE_PATTERN
    assert spec["paths"]["/white_space"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/WhiteSpaceResponse"
    }
