"""Two service replicas (`bentoml serve` processes on two loopback ports) sharing one PostgreSQL
database: every decision is logged once, and one idempotency key sent to both at once yields one;
every feedback event is stored once, one event id sent to both at once is stored once, and each
replica's live features include the events the other accepted."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from models.registry import Paths
from partnermatch.bench.route import RunningServer, running_service
from serving.decision_log import DecisionLog
from serving.feedback_store import FeedbackStore
from tests.serving.test_integration import STARTUP_LIMIT_SECONDS
from tests.serving.test_service import DEAL

DISTINCT_DECISIONS = 24
RACES = 6


def _route(server: RunningServer, token: str, body: dict[str, object], key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} | ({"Idempotency-Key": key} if key else {})
    return httpx.post(f"{server.url}/route", json=body, headers=headers, timeout=30.0)


def _post_feedback(server: RunningServer, token: str, event_id: str, event: dict[str, object]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.post(
        f"{server.url}/feedback", json={"event_id": event_id, "event": event}, headers=headers, timeout=30.0
    )


def _at_once(
    replicas: tuple[RunningServer, ...], send: Callable[[RunningServer], httpx.Response]
) -> list[httpx.Response]:
    """`send` to every replica at the same moment; the answers in replica order."""
    barrier = threading.Barrier(len(replicas))

    def at_barrier(server: RunningServer) -> httpx.Response:
        barrier.wait()
        return send(server)

    with ThreadPoolExecutor(max_workers=len(replicas)) as pool:
        return list(pool.map(at_barrier, replicas))


def _start_replicas(stack: ExitStack, database_url: str, log_dir: Path) -> tuple[RunningServer, ...]:
    """Two replicas on `database_url`, started (and migrating) at once, as replicas do."""
    paths = Paths.from_environment()

    def start(name: str) -> RunningServer:
        return stack.enter_context(running_service(paths, database_url, log_dir / f"{name}.log", STARTUP_LIMIT_SECONDS))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return tuple(pool.map(start, ("first", "second")))


@pytest.mark.integration
def test_two_replicas_on_one_postgresql_database_lose_and_double_nothing(
    smoke_store: Path, postgres_url: str, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        replicas = _start_replicas(stack, postgres_url, tmp_path)
        token = replicas[0].api_key  # one caller: its key lives in the shared database, so both replicas accept it

        def distinct(number: int) -> str:
            body = {"deal": DEAL | {"deal_id": f"deal-{number}"}, "options": {"max_results": 2}}
            response = _route(replicas[number % 2], token, body)
            assert response.status_code == 200, response.text
            return str(response.json()["decision_id"])

        with ThreadPoolExecutor(max_workers=4) as pool:
            decision_ids = list(pool.map(distinct, range(DISTINCT_DECISIONS)))
        assert len(set(decision_ids)) == DISTINCT_DECISIONS

        for race in range(RACES):
            body = {"deal": DEAL, "options": {"max_results": race + 1}}
            answers = _at_once(replicas, lambda server, body=body, key=f"race-{race}": _route(server, token, body, key))
            assert [answer.status_code for answer in answers] == [200, 200], [answer.text for answer in answers]
            assert answers[0].json() == answers[1].json()
            assert sorted(answer.headers.get("idempotent-replayed", "false") for answer in answers) == ["false", "true"]
            decision_ids.append(answers[0].json()["decision_id"])

    log = DecisionLog(postgres_url)
    assert len(log) == DISTINCT_DECISIONS + RACES
    assert all(log.get(decision_id) is not None for decision_id in decision_ids)
    log.close()


@pytest.mark.integration
def test_two_replicas_share_feedback_and_lose_or_double_none(
    smoke_store: Path, postgres_url: str, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        replicas = _start_replicas(stack, postgres_url, tmp_path)
        token = replicas[0].api_key
        body = {"deal": DEAL, "options": {"max_results": 2}}
        routed = [_route(replicas[number % 2], token, body).json() for number in range(8)]
        decided = [(answer["decision_id"], answer["partners"][0]["partner_id"]) for answer in routed]

        def outcome(number: int) -> tuple[str, httpx.Response]:
            decision_id, partner = decided[number]
            event = {"type": "outcome", "decision_id": decision_id, "partner_ids": [partner], "result": "won"}
            event |= {"closed_at": datetime.now(UTC).isoformat()}
            # Closed through the replica that did not route it: the decision is read from the shared log.
            event_id = f"outcome-{number}"
            return event_id, _post_feedback(replicas[(number + 1) % 2], token, event_id, event)

        with ThreadPoolExecutor(max_workers=4) as pool:
            accepted = dict(pool.map(outcome, range(len(decided))))
        assert [answer.status_code for answer in accepted.values()] == [200] * len(decided)

        for race in range(RACES):  # one event sent to both replicas at the same moment
            now = datetime.now(UTC).isoformat()
            event = {"type": "engagement", "partner_id": decided[0][1], "kind": "portal_login", "occurred_at": now}
            answers = _at_once(
                replicas, lambda server, event=event, key=f"race-{race}": _post_feedback(server, token, key, event)
            )
            assert [answer.status_code for answer in answers] == [200, 200], [answer.text for answer in answers]
            assert sorted(answer.json()["replayed"] for answer in answers) == [False, True]
            assert answers[0].json()["sequence"] == answers[1].json()["sequence"]
            accepted[f"race-{race}"] = answers[0]

        # Each replica's live features hold every event, whichever replica accepted it.
        latest = max(datetime.fromisoformat(answer.json()["accepted_at"]) for answer in accepted.values())
        for server in replicas:
            as_of = datetime.fromisoformat(_route(server, token, {"deal": DEAL}).json()["features_as_of"])
            assert as_of >= latest - timedelta(seconds=1), "the events' times are in the history"

    store = FeedbackStore(postgres_url)
    stored = store.since(0)
    store.close()
    assert sorted(item.event.event_id for item in stored) == sorted(accepted)  # nothing lost, nothing doubled
    assert {item.event.event_id: item.seq for item in stored} == {
        event_id: answer.json()["sequence"] for event_id, answer in accepted.items()
    }
