"""The BentoML service through its ASGI app (Starlette TestClient) with a smoke-sized champion from an
isolated MLflow store: status codes, error bodies, decision log, channel conflict, OpenAPI spec, and
the `partnermatch route` command. (Keys, limits and retries: test_access.py; Schemathesis: test_contract.py.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from typer.testing import CliRunner

from partnermatch.cli import app

DEAL: dict[str, Any] = {
    "requirement_text": "Next-generation firewall and SD-WAN for 40 branch offices, managed 24x7.",
    "products": ["firewall", "sd-wan"],
    "region": "dach",
    "amount": 85000.0,
    "segment": "enterprise",
}


def route(client: Any, deal: dict[str, Any] | None = None, **options: Any) -> Any:
    return client.post("/route", json={"deal": deal or DEAL, "options": options})


def top_ids(body: dict[str, Any]) -> list[str]:
    return [partner["partner_id"] for partner in body["partners"]]


def test_route_answers_with_model_version_and_logs_the_decision(client: Any) -> None:
    response = route(client, max_results=4)
    assert response.status_code == 200
    body = response.json()
    assert [partner["rank"] for partner in body["partners"]] == [1, 2, 3, 4]
    assert body["model"] == {"name": "partnermatch-win", "version": "1", "encoder": "hashing-32"}
    assert body["features_as_of"]
    assert all(len(partner["reasons"]) == 3 for partner in body["partners"])
    assert [report["name"] for report in body["constraints"]] == ["region", "capacity"]

    logged = client.get(f"/decisions/{body['decision_id']}")
    assert logged.status_code == 200
    record = logged.json()
    assert record["response"] == body
    assert record["request"]["deal"]["region"] == "dach"
    assert record["request"]["options"]["max_results"] == 4
    assert record["model"]["version"] == "1"


def test_unknown_decision_is_404_with_a_clear_message(client: Any) -> None:
    response = client.get("/decisions/no-such-decision")
    assert response.status_code == 404
    body = response.json()
    assert body["field"] == "decision_id"
    assert "no-such-decision" in body["reason"]


@pytest.mark.parametrize(
    ("deal_changes", "options", "field"),
    [
        ({"amount": -5}, {}, "deal.amount"),
        ({"amount": 0}, {}, "deal.amount"),
        ({"region": "atlantis"}, {}, "deal.region"),
        ({"products": ["warp-drive"]}, {}, "deal.products"),
        ({"products": []}, {}, "deal.products"),
        ({"requirement_text": ""}, {}, "deal.requirement_text"),
        ({}, {"max_results": 0}, "options.max_results"),
        ({}, {"max_results": 51}, "options.max_results"),
        ({}, {"allowed_regions": ["atlantis"]}, "options.allowed_regions"),
        (
            {},
            {"required_certifications": [{"product": "firewall", "min_level": 4}]},
            "options.required_certifications.0.min_level",
        ),
        ({}, {"colour": "blue"}, "options.colour"),
    ],
)
def test_bad_input_is_422_naming_the_field(
    client: Any, deal_changes: dict[str, Any], options: dict[str, Any], field: str
) -> None:
    response = route(client, DEAL | deal_changes, **options)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field
    assert body["reason"]


def test_every_problem_is_listed(client: Any) -> None:
    response = route(client, DEAL | {"amount": -5}, max_results=0)
    assert response.status_code == 422
    problems = response.json()["problems"]
    assert [problem["field"] for problem in problems] == ["deal.amount", "options.max_results"]


def test_missing_field_and_broken_json_are_422(client: Any) -> None:
    deal = {key: value for key, value in DEAL.items() if key != "amount"}
    response = route(client, deal)
    assert (response.status_code, response.json()["field"]) == (422, "deal.amount")
    broken = client.post("/route", content=b"{not json", headers={"content-type": "application/json"})
    assert (broken.status_code, broken.json()["field"]) == (422, "body")


@pytest.mark.parametrize(
    ("deal_changes", "options", "field"),
    [
        ({}, {"candidate_pool": ["P000001", "NOPE-1"]}, "options.candidate_pool"),
        ({}, {"excluded_partner_ids": ["NOPE-2"]}, "options.excluded_partner_ids"),
        ({"registered_partner_id": "NOPE-3"}, {}, "deal.registered_partner_id"),
    ],
)
def test_unknown_partner_is_404(client: Any, deal_changes: dict[str, Any], options: dict[str, Any], field: str) -> None:
    response = route(client, DEAL | deal_changes, **options)
    assert response.status_code == 404
    body = response.json()
    assert body["field"] == field
    assert "NOPE" in body["reason"]
    assert body["model_version"] == "1"


def test_empty_pool_after_constraints_is_409_never_an_empty_200(client: Any) -> None:
    pool = top_ids(route(client, max_results=3).json())
    response = route(client, candidate_pool=pool, excluded_partner_ids=pool)
    assert response.status_code == 409
    body = response.json()
    assert body["field"] == "options.candidate_pool"
    assert "excluded" in body["reason"]
    strict = route(
        client,
        required_certifications=[
            {"product": product, "min_level": 3} for product in DEAL["products"] + ["storage", "erp-integration"]
        ],
    )
    assert strict.status_code == 409
    assert strict.json()["field"] == "options"


def test_channel_conflict_protected_then_overridden(client: Any) -> None:
    on_merit = top_ids(route(client, max_results=5, respect_capacity=False).json())
    registered = on_merit[3]
    protected = route(
        client, DEAL | {"registered_partner_id": registered}, max_results=5, respect_capacity=False
    ).json()
    assert top_ids(protected)[0] == registered
    assert protected["partners"][0]["registered"] is True
    assert protected["channel_conflict"]["status"] == "protected"
    assert protected["channel_conflict"]["merit_rank"] == 4
    assert protected["channel_conflict"]["displaced_partner_id"] == on_merit[0]

    overridden = route(
        client,
        DEAL | {"registered_partner_id": registered},
        max_results=5,
        respect_capacity=False,
        override_registration=True,
    ).json()
    assert top_ids(overridden) == on_merit
    assert overridden["channel_conflict"]["status"] == "overridden"
    assert overridden["channel_conflict"]["merit_rank"] == 4


def test_health_probes_and_docs(client: Any) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        assert client.get(path).status_code == 200
    assert client.get("/docs").status_code == 200


def test_openapi_spec_validates_and_documents_the_endpoints(client: Any) -> None:
    spec = client.get("/docs.json").json()
    schemathesis.openapi.from_dict(spec).validate()
    assert "post" in spec["paths"]["/route"]
    assert "get" in spec["paths"]["/decisions/{decision_id}"]


def test_route_command_prints_the_response(smoke_store: Path, tmp_path: Path) -> None:
    deal_file = tmp_path / "deal.json"
    deal_file.write_text(json.dumps(DEAL))
    result = CliRunner().invoke(app, ["route", "--deal", str(deal_file)])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["model"]["version"] == "1"
    assert len(body["partners"]) == 5

    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps({"deal": DEAL, "options": {"max_results": 2}}))
    result = CliRunner().invoke(app, ["route", "--deal", str(request_file)])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["partners"]) == 2


@pytest.mark.parametrize(
    "content",
    [None, "{broken", "[1, 2]", json.dumps(DEAL | {"amount": -1}), json.dumps(DEAL | {"region": "atlantis"})],
)
def test_route_command_bad_file_exits_2(smoke_store: Path, tmp_path: Path, content: str | None) -> None:
    deal_file = tmp_path / "deal.json"
    if content is not None:
        deal_file.write_text(content)
    result = CliRunner().invoke(app, ["route", "--deal", str(deal_file)])
    assert result.exit_code == 2
    assert "error" in result.output
