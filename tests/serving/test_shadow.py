"""Shadow mode over the ASGI app: the smoke store's challenger (`conftest.SHADOW_SMOKE`) routes every
new decision beside the champion; the answer is the champion's, both are logged, and
`shadow-report` compares them, with outcomes that came back through POST /feedback."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from typer.testing import CliRunner

from models.registry import CHALLENGER, CHAMPION, REGISTERED_WIN_MODEL, Paths, version_by_alias
from partnermatch.cli import app
from partnermatch.shadow_report import AGREEMENT_AT, shadow_report
from serving.decision_log import DecisionLog
from serving.feedback import LiveRouter
from serving.schemas import RouteRequest, RouteResponse
from serving.service import prepare_database
from serving.shadow import SHADOW_ENV, Shadow, shadow_alias
from tests.serving.test_service import DEAL, route


def _shadowed(decision_id: str) -> tuple[str, str] | None:
    log = DecisionLog(prepare_database(Paths.from_environment()))
    try:
        found = {json.loads(champion)["decision_id"]: (version, shadow) for champion, version, shadow in log.shadowed()}
    finally:
        log.close()
    return found.get(decision_id)


def test_the_champion_answers_and_the_challenger_is_logged_beside_it(client: Any) -> None:
    paths = Paths.from_environment()
    champion = version_by_alias(paths, REGISTERED_WIN_MODEL, CHAMPION)
    challenger = version_by_alias(paths, REGISTERED_WIN_MODEL, CHALLENGER)
    assert champion is not None and challenger is not None and champion.version != challenger.version
    key = {"Idempotency-Key": uuid.uuid4().hex}
    response = client.post("/route", json={"deal": DEAL, "options": {"max_results": 10}}, headers=key)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"]["version"] == champion.version
    shadowed = _shadowed(answer["decision_id"])
    assert shadowed is not None
    version, shadow_json = shadowed
    shadow = RouteResponse.model_validate_json(shadow_json)
    assert version == shadow.model.version == challenger.version
    assert shadow.deal_id == answer["deal_id"] and len(shadow.partners) == len(answer["partners"])
    # The shadow's probabilities are its own (a 3-tree model), not a copy of the champion's.
    assert [p.win_probability for p in shadow.partners] != [p["win_probability"] for p in answer["partners"]]
    replayed = client.post("/route", json={"deal": DEAL, "options": {"max_results": 10}}, headers=key)
    assert replayed.json() == answer and _shadowed(answer["decision_id"]) == shadowed


def test_shadow_report_compares_both_on_decisions_and_feedback(client: Any, tmp_path: Path) -> None:
    decision = route(client, max_results=10).json()
    partner_id = decision["partners"][0]["partner_id"]
    closed = datetime.now(UTC).isoformat()
    event = {"type": "outcome", "decision_id": decision["decision_id"], "partner_ids": [partner_id]}
    sent = client.post(
        "/feedback", json={"event_id": uuid.uuid4().hex, "event": event | {"result": "won", "closed_at": closed}}
    )
    assert sent.status_code == 200, sent.text
    result = CliRunner().invoke(app, ["shadow-report", "--json", str(tmp_path / "shadow.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "shadow.json").read_text())
    assert report["decisions"] >= 1 and len(report["shadow_versions"]) == 1
    for k in AGREEMENT_AT:
        assert 0 <= report["agreement"][f"jaccard_at_{k}"] <= 1 and 0 <= report["agreement"][f"overlap_at_{k}"] <= 1
    assert 0 < report["expected_wins"]["champion"] <= report["decisions"]
    assert 0 < report["expected_wins"]["shadow"] <= report["decisions"]
    outcomes = report["outcomes"]
    assert outcomes["attempts"] >= 1
    assert outcomes["champion"]["log_loss"] > 0 and outcomes["shadow"]["log_loss"] > 0
    assert outcomes["champion"]["log_loss"] != outcomes["shadow"]["log_loss"]


def _response(decision_id: str, probabilities: dict[str, float], version: str) -> RouteResponse:
    ranked = sorted(probabilities.items(), key=lambda item: -item[1])
    return RouteResponse.model_validate(
        {
            "decision_id": decision_id,
            "deal_id": None,
            "model": {"name": REGISTERED_WIN_MODEL, "version": version, "encoder": "hashing-32"},
            "features_as_of": "2026-01-01T00:00:00Z",
            "partners": [
                {
                    "rank": rank,
                    "partner_id": partner,
                    "name": partner,
                    "win_probability": p,
                    "registered": False,
                    "reasons": [],
                }
                for rank, (partner, p) in enumerate(ranked, start=1)
            ],
            "constraints": [],
            "candidates": {
                "source": "all_eligible",
                "retrieved": 0,
                "text_neighbours": 0,
                "history_shortlist": 0,
                "eligible_partners": len(ranked),
                "scored": len(ranked),
            },
            "channel_conflict": None,
        }
    )


def test_report_of_identical_and_disjoint_answers() -> None:
    same = _response("d1", {"a": 0.6, "b": 0.3}, "1")
    report = shadow_report([(same, same)], [])
    assert report["agreement"]["jaccard_at_1"] == 1 and report["agreement"]["overlap_at_5"] == pytest.approx(2 / 5)
    assert report["expected_wins"] == {"champion": 0.6, "shadow": 0.6} and report["outcomes"] == {"attempts": 0}
    other = _response("d1", {"c": 0.9, "d": 0.2}, "2")
    report = shadow_report([(same, other)], [])
    assert report["agreement"]["jaccard_at_10"] == 0 and report["expected_wins"]["shadow"] == 0.9
    assert shadow_report([], []) == {"decisions": 0, "champion_versions": [], "shadow_versions": []}


def test_shadow_mode_reads_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SHADOW_ENV, "")
    assert shadow_alias() is None
    monkeypatch.setenv(SHADOW_ENV, "challenger")
    assert shadow_alias() == CHALLENGER
    monkeypatch.setenv(SHADOW_ENV, "champion")
    with pytest.raises(ValueError, match=SHADOW_ENV):
        shadow_alias()


def _failing_route() -> Any:
    raise RuntimeError("the shadow broke")


def test_a_failing_shadow_never_raises(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    log = DecisionLog(f"sqlite:///{tmp_path / 'unused.sqlite'}")
    failing = SimpleNamespace(base=SimpleNamespace(model_info=SimpleNamespace(version="9")), current=_failing_route)
    shadow = Shadow(cast(LiveRouter, failing), log)
    request = RouteRequest.model_validate({"deal": DEAL})
    shadow.answer(request, json.dumps({"decision_id": "d1"}))
    assert "shadow model v9 could not answer" in caplog.text
    log.close()
