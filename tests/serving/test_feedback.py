"""Feedback: live features equal a from-scratch rebuild, load shows at once, and the HTTP contract
(404 unknown references, 422 bad times, 409 conflicts, idempotent replays, scope)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pandas as pd
import pytest

from features import schema
from features.pairs import FEATURE_COLUMNS, LOAD_RATIO, build_feature_context, pair_feature_matrix
from features.synthetic import generate_ecosystem
from serving.decision_log import DecisionLog
from serving.feedback import LiveRouter, accept_feedback, feedback_tables
from serving.feedback_store import FeedbackStore
from serving.idempotency import record_decision
from serving.routing.state import single_deal
from serving.schemas import EngagementKind, FeedbackRequest, RouteRequest
from tests.serving.conftest import WORLD, World, deal_body


def _outcome(decision_id: str, partners: list[str], result: str, closed_at: datetime) -> dict[str, Any]:
    return {
        "type": "outcome",
        "decision_id": decision_id,
        "partner_ids": partners,
        "result": result,
        "closed_at": closed_at.isoformat(),
    }


def test_engagement_kinds_are_the_schema_vocabulary() -> None:
    assert EngagementKind.__args__ == schema.ENGAGEMENT_KINDS


def test_live_features_equal_a_rebuild_on_history_plus_feedback(synthetic_world: World, store_url: str) -> None:
    ecosystem, _ = generate_ecosystem(WORLD)
    decisions, store = DecisionLog(store_url), FeedbackStore(store_url)
    live = LiveRouter(synthetic_world.router, store)
    busy = str(synthetic_world.router.context.partner_ids[0])
    before = live.current().state.load_ratio[0]
    for row in range(5):  # the busy partner takes five deals; a team loses a sixth
        request = RouteRequest.model_validate({"deal": deal_body(synthetic_world.deals, row)})
        decided = record_decision(decisions, request.model_dump_json(), live.current().route(request))
        now = datetime.now(UTC)
        body = _outcome(decided.decision_id, [busy], "won" if row % 2 else "lost", now)
        accept_feedback(
            FeedbackRequest.model_validate({"event_id": f"o{row}", "event": body}), store, decisions, live, now
        )
    now = datetime.now(UTC)
    team = [str(partner) for partner in synthetic_world.router.context.partner_ids[1:3]]
    body = _outcome(decided.decision_id, team, "lost", now)
    accept_feedback(FeedbackRequest.model_validate({"event_id": "team", "event": body}), store, decisions, live, now)
    engaged = {"type": "engagement", "partner_id": team[0], "kind": "portal_login", "occurred_at": now.isoformat()}
    accept_feedback(
        FeedbackRequest.model_validate({"event_id": "login", "event": engaged}), store, decisions, live, now
    )

    router = live.current()
    capacity = synthetic_world.router.context.partner_capacity[0]
    assert router.state.load_ratio[0] == pytest.approx(5 / capacity), (
        f"the history's load ({before}) has aged out; the five new deals count"
    )
    deals, outcomes, engagement = feedback_tables([item.event for item in store.since(0)])
    assert len(outcomes) == 7 and len(engagement) == 1
    scratch = build_feature_context(
        ecosystem.partners,
        pd.concat([ecosystem.deals, deals], ignore_index=True),
        pd.concat([ecosystem.outcomes, outcomes], ignore_index=True),
        pd.concat([ecosystem.engagement, engagement], ignore_index=True),
        synthetic_world.router.context.partner_vectors,
        (router.context.products, router.context.regions),
    )
    rows = np.arange(len(scratch.partner_ids))
    deal = single_deal(router.state.as_of_seconds, 0, np.eye(len(scratch.products), dtype=bool)[0], 5000.0, np.ones(32))
    expected = pair_feature_matrix(scratch, deal, np.zeros_like(rows), rows)
    np.testing.assert_allclose(
        pair_feature_matrix(router.context, deal, np.zeros_like(rows), rows), expected, atol=1e-5
    )
    assert expected[0, FEATURE_COLUMNS.index(LOAD_RATIO)] == pytest.approx(5 / capacity)

    other_worker = LiveRouter(synthetic_world.router, FeedbackStore(store_url))
    np.testing.assert_array_equal(other_worker.current().state.load_ratio, router.state.load_ratio)
    assert (
        LiveRouter(synthetic_world.router, store, applied_after=store.latest_seq()).current() is synthetic_world.router
    )


def _routed(client: Any, deals: Any, row: int) -> dict[str, Any]:
    answer = client.post("/route", json={"deal": deal_body(deals, row, deal_id=f"crm-{uuid.uuid4().hex}")})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


@pytest.fixture(scope="module")
def smoke_deals(smoke_store: Path) -> Any:
    return pd.read_parquet(next((smoke_store / "cache").rglob("deals.parquet")))


def test_feedback_over_http(client: Any, smoke_deals: Any) -> None:
    decision = _routed(client, smoke_deals, 3)
    partner = decision["partners"][0]["partner_id"]
    closed = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    event = _outcome(decision["decision_id"], [partner], "won", datetime.fromisoformat(closed))
    event_id = uuid.uuid4().hex
    first = client.post("/feedback", json={"event_id": event_id, "event": event})
    assert first.status_code == 200, first.text
    again = client.post("/feedback", json={"event_id": event_id, "event": event})
    assert again.status_code == 200 and again.json() == first.json() | {"replayed": True}
    assert first.json()["model"]["name"] == "partnermatch-win" and not first.json()["replayed"]
    changed = client.post("/feedback", json={"event_id": event_id, "event": event | {"result": "lost"}})
    assert (changed.status_code, changed.json()["field"]) == (409, "event_id")
    twice = client.post("/feedback", json={"event_id": uuid.uuid4().hex, "event": event | {"result": "lost"}})
    assert (twice.status_code, twice.json()["field"]) == (409, "event.partner_ids")

    def answer(**changes: Any) -> tuple[int, str]:
        reply = client.post("/feedback", json={"event_id": uuid.uuid4().hex, "event": event | changes})
        return reply.status_code, reply.json()["field"]

    assert answer(decision_id="no-such-decision") == (404, "event.decision_id")
    assert answer(partner_ids=["no-such-partner"]) == (404, "event.partner_ids")
    assert answer(deal_id="another-deal") == (422, "event.deal_id")
    assert answer(closed_at="2001-01-01T00:00:00+00:00") == (422, "event.closed_at")
    assert answer(closed_at="2001-01-01T00:00:00")[0] == 422, "times need an offset"
    engagement = {"type": "engagement", "partner_id": "nobody", "kind": "portal_login", "occurred_at": closed}
    reply = client.post("/feedback", json={"event_id": uuid.uuid4().hex, "event": engagement})
    assert (reply.status_code, reply.json()["field"]) == (404, "event.partner_id")


def test_feedback_needs_its_scope(client: Any, key_store: Any) -> None:
    from serving.keys import Scope
    from serving.ratelimit import RateLimit
    from tests.serving.conftest import UNLIMITED

    route_only = key_store.create("route-only", {Scope.ROUTE}, RateLimit(**UNLIMITED)).token
    reply = client.post("/feedback", json={}, headers={"Authorization": f"Bearer {route_only}"})
    assert reply.status_code == 403


# A PostgreSQL server that is not there: connecting fails at once, as when the database is down.
UNREACHABLE_DATABASE = "postgresql://partnermatch@/partnermatch?host=/nonexistent"


@pytest.fixture
def unreachable_feedback_store(client: Any) -> Iterator[None]:
    """The running service as if its database had gone away (for feedback and live features)."""
    service = bentoml.get_current_service()
    live = service.models.current.win.model
    saved = service.feedback_store, live.store
    unreachable = FeedbackStore(UNREACHABLE_DATABASE)
    service.feedback_store = live.store = unreachable
    try:
        yield
    finally:
        service.feedback_store, live.store = saved
        unreachable.close()


@pytest.mark.usefixtures("unreachable_feedback_store")
def test_an_unreachable_database_is_503_with_retry_after_never_500(client: Any, smoke_deals: Any) -> None:
    partner = str(bentoml.get_current_service().router.context.partner_ids[0])
    now = datetime.now(UTC).isoformat()
    engagement = {"type": "engagement", "partner_id": partner, "kind": "portal_login", "occurred_at": now}
    replies = [
        client.post("/feedback", json={"event_id": uuid.uuid4().hex, "event": engagement}),
        client.post("/route", json={"deal": deal_body(smoke_deals, 3)}),  # its live features read the store
    ]
    for reply in replies:
        assert (reply.status_code, reply.headers.get("Retry-After")) == (503, "1"), reply.text
        assert reply.json()["field"] == "server" and "database is unavailable" in reply.json()["reason"]
