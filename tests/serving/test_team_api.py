"""`POST /team`, `POST /route/batch` and `POST /route/why_not` through the service's ASGI app with the
smoke win champion and smoke team model, and the `partnermatch team` / `route-batch` commands."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from features.synthetic import generate_ecosystem
from partnermatch.cli import app
from tests.serving.conftest import SMOKE, SMOKE_TEAM
from tests.serving.test_access import logged_decisions
from tests.serving.test_service import DEAL

TEAM_DEAL: dict[str, Any] = DEAL | {"products": ["firewall", "sd-wan", "storage"], "deal_id": "team-1"}


def team(client: Any, deal: dict[str, Any] | None = None, **options: Any) -> Any:
    return client.post("/team", json={"deal": deal or TEAM_DEAL, "options": options})


def _error(response: Any, status: int, field: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["field"] == field, body
    return body


def test_team_covers_every_requirement_within_the_limits(client: Any) -> None:
    response = team(client, top_k=3, max_members=2)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "partnermatch-team", "version": "1", "encoder": "hashing-32"}
    assert body["deal_id"] == "team-1"
    assert sorted(body["requirements"]) == sorted(TEAM_DEAL["products"])
    assert all(count >= 1 for count in body["candidates_per_requirement"])
    teams = body["teams"]
    assert [item["rank"] for item in teams] == list(range(1, len(teams) + 1))
    assert len(teams) == 3
    probabilities = [item["win_probability"] for item in teams]
    assert probabilities == sorted(probabilities, reverse=True)
    for item in teams:
        assert len(item["members"]) <= 2
        covered = [product for member in item["members"] for product in member["covers"]]
        assert sorted(covered) == sorted(TEAM_DEAL["products"])  # each requirement exactly once
        credit = sum(member["credit"] for member in item["members"])
        assert credit == pytest.approx(item["win_probability"] - item["baseline_probability"], abs=1e-9)
        assert 0.0 <= item["cohesion"] <= 1.0
        assert item["reasons"]
    assert len({tuple(sorted((m["partner_id"], tuple(m["covers"])) for m in t["members"])) for t in teams}) == 3


def test_team_keeps_required_members_and_drops_excluded_ones(client: Any) -> None:
    best = team(client, top_k=1).json()["teams"][0]["members"]
    leader = best[0]["partner_id"]
    without = team(client, top_k=3, excluded_partner_ids=[leader]).json()
    assert all(leader not in {m["partner_id"] for m in item["members"]} for item in without["teams"])
    outsider = without["teams"][0]["members"][0]["partner_id"]
    forced = team(client, top_k=3, required_partner_ids=[outsider]).json()
    assert all(outsider in {m["partner_id"] for m in item["members"]} for item in forced["teams"])


def test_team_errors_name_the_field(client: Any) -> None:
    _error(team(client, required_partner_ids=["P999999"]), 404, "options.required_partner_ids")
    _error(team(client, excluded_partner_ids=["nobody"]), 404, "options.excluded_partner_ids")
    partners = generate_ecosystem(SMOKE_TEAM.ecosystem)[0].partners["partner_id"].astype(str).tolist()
    uncovered = _error(team(client, excluded_partner_ids=partners), 422, "deal.products")
    assert "'firewall'" in uncovered["reason"]  # the first requirement, by name
    conflict = _error(
        team(client, required_partner_ids=[partners[0]], excluded_partner_ids=[partners[0]]),
        409,
        "options.required_partner_ids",
    )
    assert "excluded" in conflict["reason"]
    too_many = _error(
        team(client, max_members=1, required_partner_ids=partners[:2]), 409, "options.required_partner_ids"
    )
    assert "max_members" in too_many["reason"]


def test_team_without_a_registered_team_model_answers_503_naming_the_command(client: Any) -> None:
    import bentoml

    models = bentoml.get_current_service().models
    missing = "no partnermatch-team@champion: run `partnermatch train-team`"
    saved = models.swap(replace(models.current, teams=None, teams_missing=missing))
    try:
        body = _error(team(client), 503, "model")
    finally:
        models.swap(saved)
    assert "partnermatch train-team" in body["reason"]


def test_load_team_assembler_names_the_training_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from models.registry import Paths

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # mlflow.set_tracking_uri sets it
    from serving.service import load_team_assembler
    from serving.team import ModelNotRegisteredError

    with pytest.raises(ModelNotRegisteredError, match="partnermatch train-team"):
        load_team_assembler(Paths(mlruns_dir=tmp_path / "mlruns", cache_dir=tmp_path / "cache"))


def _batch_body(count: int, **options: Any) -> dict[str, Any]:
    deals = [{"deal": DEAL | {"deal_id": f"b{index}"}, "options": {"max_results": 4}} for index in range(count)]
    return {"deals": deals, "options": options}


def test_batch_assigns_globally_within_capacity_and_beats_greedy(client: Any) -> None:
    response = client.post("/route/batch", json=_batch_body(8, capacity_per_partner=1))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["name"] == "partnermatch-win"
    assert [item["index"] for item in body["assignments"]] == list(range(8))
    assigned = [item["partner_id"] for item in body["assignments"] if item["partner_id"]]
    assert len(assigned) == len(set(assigned)) == body["global_plan"]["assigned"] <= 4  # 4 candidates, 1 deal each
    assert body["global_plan"]["expected_wins"] >= body["greedy"]["expected_wins"] - 1e-9
    assert body["lift"] >= -1e-9
    assert sum(item["deals"] for item in body["exposure"]) == len(assigned)
    assert all(item["deals"] <= item["capacity"] for item in body["exposure"])
    routed = client.post("/route", json={"deal": DEAL, "options": {"max_results": 4}}).json()
    assert set(assigned) <= {partner["partner_id"] for partner in routed["partners"]}


def test_batch_exposure_budget_moves_deals_to_emerging_partners(client: Any) -> None:
    free = client.post("/route/batch", json=_batch_body(6, capacity_per_partner=3)).json()
    exposed = client.post("/route/batch", json=_batch_body(6, capacity_per_partner=3, exposure_share=1.0)).json()
    assert exposed["global_plan"]["emerging_share"] == pytest.approx(1.0) or exposed["global_plan"]["assigned"] == 0
    assert exposed["global_plan"]["expected_wins"] <= free["global_plan"]["expected_wins"] + 1e-9
    assert all(item["emerging"] for item in exposed["exposure"])


def test_batch_errors_name_the_deal(client: Any) -> None:
    body = _batch_body(3)
    body["deals"][1]["deal"] = DEAL | {"region": "atlantis"}
    _error(client.post("/route/batch", json=body), 422, "deals[1].deal.region")
    body = _batch_body(2)
    body["deals"][0]["options"]["excluded_partner_ids"] = ["nobody"]
    _error(client.post("/route/batch", json=body), 404, "deals[0].options.excluded_partner_ids")
    assert client.post("/route/batch", json={"deals": []}).status_code == 422


def why_not(client: Any, partner_id: str, **options: Any) -> Any:
    return client.post("/route/why_not", json={"deal": DEAL, "options": options, "partner_id": partner_id})


def test_why_not_names_the_constraint_or_the_features(client: Any) -> None:
    routed = client.post("/route", json={"deal": DEAL, "options": {"max_results": 3}}).json()
    top = [partner["partner_id"] for partner in routed["partners"]]
    inside = why_not(client, top[0], max_results=3).json()
    assert inside["in_top_k"] and inside["rank"] == 1 and inside["removed_by"] is None

    excluded = why_not(client, top[0], max_results=3, excluded_partner_ids=[top[0]]).json()
    assert excluded["removed_by"] == "excluded" and not excluded["in_top_k"] and excluded["rank"] is None

    below = why_not(client, top[0], max_results=1, excluded_partner_ids=[]).json()
    assert below["in_top_k"]
    second = why_not(client, top[1], max_results=1).json()
    assert not second["in_top_k"] and second["rank"] == 2 and second["removed_by"] is None
    assert second["compared_with"] == top[0]
    assert second["compared_win_probability"] >= second["win_probability"]
    assert second["gaps"] and all(gap["gap"] > 0 for gap in second["gaps"])

    partners = generate_ecosystem(SMOKE.ecosystem)[0].partners
    elsewhere = partners[~partners["regions"].astype(str).str.contains(DEAL["region"])]["partner_id"].iloc[0]
    region = why_not(client, str(elsewhere)).json()
    assert region["removed_by"] == "region" and region["removed_detail"] == f"operates in {DEAL['region']}"


def test_why_not_unknown_partner_is_404(client: Any) -> None:
    _error(why_not(client, "P999999"), 404, "partner_id")


def test_cli_team_and_route_batch_use_the_endpoints_code(smoke_store: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    deal_file = tmp_path / "deal.json"
    deal_file.write_text(json.dumps({"deal": TEAM_DEAL, "options": {"top_k": 2}}))
    result = runner.invoke(app, ["team", "--deal", str(deal_file), "--json", str(tmp_path / "teams.json")])
    assert result.exit_code == 0, result.output
    teams = json.loads((tmp_path / "teams.json").read_text())
    assert len(teams["teams"]) == 2 and teams["model"]["name"] == "partnermatch-team"

    deals_file = tmp_path / "deals.json"
    deals_file.write_text(json.dumps(_batch_body(5, capacity_per_partner=1)))
    out = tmp_path / "plan.json"
    result = runner.invoke(app, ["route-batch", "--deals", str(deals_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(json.loads(out.read_text())["assignments"]) == 5

    deals_file.write_text(json.dumps({"deals": [{"deal": DEAL | {"amount": -1}}]}))
    bad = runner.invoke(app, ["route-batch", "--deals", str(deals_file), "--out", str(out)])
    assert bad.exit_code == 2
    assert "amount" in bad.output and "Traceback" not in bad.output
    deal_file.write_text("{not json")
    assert runner.invoke(app, ["team", "--deal", str(deal_file)]).exit_code == 2


def test_team_with_a_text_that_cancels_its_requirement_uses_history_alone(client: Any) -> None:
    import numpy as np

    from features.embed import HashingEncoder

    encoder = HashingEncoder(32)  # the smoke team bundle's encoder
    product = encoder.encode(["storage"])[0]
    words = [f"w{index}" for index in range(2000)]
    opposite = next(
        word for word, vector in zip(words, encoder.encode(words), strict=True) if np.allclose(vector, -product)
    )
    response = team(client, TEAM_DEAL | {"products": ["storage"], "requirement_text": opposite}, top_k=1)
    assert response.status_code == 200, response.text
    assert response.json()["candidates_per_requirement"][0] >= 1


def test_more_required_partners_than_requirements_is_a_conflict(client: Any) -> None:
    body = team(client, top_k=3, max_members=3).json()
    members = sorted({m["partner_id"] for item in body["teams"] for m in item["members"]})[:2]
    assert len(members) == 2
    deal = TEAM_DEAL | {"products": ["firewall"]}
    conflict = _error(team(client, deal, required_partner_ids=members), 409, "options.required_partner_ids")
    assert "requirements" in conflict["reason"]


def test_the_contract_documents_the_new_operations_and_their_bounds(client: Any) -> None:
    document = client.get("/docs.json").json()
    for path, scope in (("/team", "team"), ("/route/batch", "route"), ("/route/why_not", "route")):
        operation = document["paths"][path]["post"]
        assert {"404", "409", "422", "503"} <= operation["responses"].keys()
        assert f"scope `{scope}`" in operation["description"]
        takes_key = any(parameter["name"] == "Idempotency-Key" for parameter in operation.get("parameters", []))
        assert takes_key == (path == "/team")  # a team is a logged decision; batch and why-not are not
    capacity = document["components"]["schemas"]["BatchOptions"]["properties"]["capacity_per_partner"]["anyOf"][0]
    assert (capacity["minimum"], capacity["maximum"]) == (0, 10_000)
    assert document["components"]["schemas"]["BatchRouteRequest"]["properties"]["deals"]["maxItems"] == 200


def test_team_is_a_logged_decision_that_a_retry_replays(client: Any) -> None:
    retry = {"Idempotency-Key": "crm-team-retry-1"}
    body = {"deal": TEAM_DEAL, "options": {"top_k": 2}}
    before = logged_decisions()
    first = client.post("/team", json=body, headers=retry)
    again = client.post("/team", json=body, headers=retry)
    assert first.status_code == again.status_code == 200, first.text
    assert again.content == first.content  # byte for byte: same decision_id, same teams
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert logged_decisions() == before + 1
    decision_id = first.json()["decision_id"]
    record = client.get(f"/decisions/{decision_id}").json()
    assert record["response"] == first.json()
    assert record["request"]["options"]["top_k"] == 2
    assert record["model"]["name"] == "partnermatch-team"

    conflict = _error(
        client.post("/team", json={"deal": TEAM_DEAL, "options": {"top_k": 1}}, headers=retry),
        409,
        "headers.idempotency-key",
    )
    assert decision_id in conflict["reason"]
    assert logged_decisions() == before + 1
    # Without the header, the same deal_id and body is a retry too; a plain new request is a new decision.
    replayed = client.post("/team", json=body)
    assert replayed.json()["decision_id"] != decision_id  # the header's claim is not the deal_id's
    assert client.post("/team", json=body).json()["decision_id"] == replayed.json()["decision_id"]
    assert logged_decisions() == before + 2


def test_feedback_on_a_team_decision_is_accepted(client: Any) -> None:
    decided = team(client, deal=TEAM_DEAL | {"deal_id": "team-feedback-1"}, top_k=1).json()
    members = [member["partner_id"] for member in decided["teams"][0]["members"]]
    event = {
        "event_id": "team-feedback-1-won",
        "event": {
            "type": "outcome",
            "decision_id": decided["decision_id"],
            "partner_ids": members,
            "result": "won",
            "closed_at": datetime.now(UTC).isoformat(),
        },
    }
    response = client.post("/feedback", json=event)
    assert response.status_code == 200, response.text
