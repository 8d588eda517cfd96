"""A store that is locked past its busy timeout or cannot be reached answers 503 with `Retry-After`
and the one JSON error body, never 500, on POST /route and POST /feedback (over the ASGI app)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from serving import stores
from serving.decision_log import DecisionLog
from serving.feedback_store import FeedbackStore
from serving.stores import sqlite_url, upgrade_database
from tests.serving.test_access import error_of
from tests.serving.test_service import DEAL

# Nothing listens on the discard port of the loopback: connecting is refused at once.
UNREACHABLE_DATABASE = "postgresql://partnermatch@127.0.0.1:9/partnermatch"
BUSY_SECONDS = 0.2  # instead of 30 s: how long a write waits for a lock before the store gives up


def route_body() -> dict[str, Any]:
    return {"deal": DEAL | {"deal_id": f"crm-{uuid.uuid4().hex}"}, "options": {"max_results": 2}}


@pytest.fixture
def routed(client: Any) -> dict[str, Any]:
    """A decision logged while the stores work."""
    answer = client.post("/route", json=route_body())
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def engagement(routed: dict[str, Any]) -> dict[str, Any]:
    event = {
        "type": "engagement",
        "partner_id": routed["partners"][0]["partner_id"],
        "kind": "portal_login",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    return {"event_id": uuid.uuid4().hex, "event": event}


def outcome(routed: dict[str, Any]) -> dict[str, Any]:
    event = {
        "type": "outcome",
        "decision_id": routed["decision_id"],
        "partner_ids": [routed["partners"][0]["partner_id"]],
        "result": "won",
        "closed_at": (datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
    }
    return {"event_id": uuid.uuid4().hex, "event": event}


def assert_unavailable(response: Any) -> None:
    body = error_of(response, 503)
    assert body["field"] == "server" and "unavailable" in body["reason"]
    assert response.headers["retry-after"] == "1"


@pytest.fixture
def service() -> Any:
    import bentoml

    return bentoml.get_current_service()


@pytest.fixture
def locked_stores(
    routed: dict[str, Any], service: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """After `routed`: the service's database (decision log and feedback store) swapped for one whose
    write lock another connection holds (as a stuck writer in another process would)."""
    monkeypatch.setattr(stores, "SQLITE_BUSY_SECONDS", BUSY_SECONDS)
    url = sqlite_url(tmp_path / "database.sqlite")
    upgrade_database(url)
    decisions, feedback = DecisionLog(url), FeedbackStore(url)
    holder = sqlite3.connect(tmp_path / "database.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    monkeypatch.setattr(service, "decisions", decisions)
    monkeypatch.setattr(service, "feedback_store", feedback)
    yield
    holder.execute("ROLLBACK")
    holder.close()
    decisions.close()
    feedback.close()


@pytest.mark.usefixtures("locked_stores")
def test_locked_stores_answer_503_with_retry_after(client: Any, routed: dict[str, Any]) -> None:
    assert_unavailable(client.post("/route", json=route_body()))
    assert_unavailable(client.post("/feedback", json=engagement(routed)))


def test_an_unreachable_decision_log_answers_503(
    client: Any, service: Any, routed: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    unreachable = DecisionLog(UNREACHABLE_DATABASE)
    monkeypatch.setattr(service, "decisions", unreachable)
    assert_unavailable(client.post("/route", json=route_body()))
    assert_unavailable(client.post("/feedback", json=outcome(routed)))  # the outcome's decision is looked up
    unreachable.close()


def test_an_unreadable_feedback_store_answers_503(
    client: Any, service: Any, routed: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_read() -> int:
        raise sa.exc.OperationalError("SELECT max(seq)", {}, sqlite3.OperationalError("disk I/O error"))

    # Every route reads the store's latest sequence number first (live features).
    monkeypatch.setattr(service.feedback_store, "latest_seq", failing_read)
    assert_unavailable(client.post("/route", json=route_body()))
    # Accepting feedback only writes (it checks references against the bundle's catalogue), so it goes on.
    assert client.post("/feedback", json=engagement(routed)).status_code == 200
