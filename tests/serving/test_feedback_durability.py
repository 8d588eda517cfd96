"""kill -9 of a real service (`bentoml serve` and its workers, which run in sessions of their own)
while clients post feedback: every event it acknowledged with a 200 is in the database afterwards, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import itertools
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import pytest

from models.registry import Paths
from partnermatch.bench.route import RunningServer, running_service
from serving.feedback_store import FeedbackStore
from tests.serving.test_integration import STARTUP_LIMIT_SECONDS
from tests.serving.test_service import DEAL

CLIENTS = 4
ACKNOWLEDGED_BEFORE_KILL = 60
KILL_WAIT_SECONDS = 120.0


def _routed_decisions(server: RunningServer, count: int) -> list[tuple[str, list[str]]]:
    """`count` decisions of the service: (decision id, its partner ids)."""
    decided = []
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30.0) as client:
        for number in range(count):
            body = {"deal": DEAL | {"deal_id": f"kill-{number}"}, "options": {"max_results": 3}}
            answer = client.post("/route", json=body)
            assert answer.status_code == 200, answer.text
            decided.append((answer.json()["decision_id"], [item["partner_id"] for item in answer.json()["partners"]]))
    return decided


def _feedback_until_killed(
    server: RunningServer,
    client_number: int,
    decided: list[tuple[str, list[str]]],
    acknowledged: list[str],
    stop: threading.Event,
) -> None:
    """Post events (an outcome per decision, then engagement) until the service stops answering (or
    `stop` is set); append the id of each event answered 200 to `acknowledged`."""
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30.0) as client:
        for number in itertools.count():
            if stop.is_set():
                return
            now = datetime.now(UTC).isoformat()
            decision_id, partner_ids = decided[number % len(decided)]
            if number < len(decided):
                partner = partner_ids[client_number % len(partner_ids)]
                event = {"type": "outcome", "decision_id": decision_id, "partner_ids": [partner]}
                event |= {"result": "won", "closed_at": now}
            else:
                event = {"type": "engagement", "partner_id": partner_ids[0], "kind": "portal_login", "occurred_at": now}
            event_id = f"c{client_number}-{number}-{uuid.uuid4().hex[:8]}"
            try:
                answer = client.post("/feedback", json={"event_id": event_id, "event": event})
            except httpx.TransportError:
                return
            if answer.status_code == 200:
                acknowledged.append(event_id)
            elif answer.status_code != 409:  # two clients closing the same attempt: one conflicts
                raise AssertionError(answer.text)


def _kill_9_tree(pid: int) -> int:
    """SIGKILL the process `pid` and every descendant at once; how many processes that was."""
    root = psutil.Process(pid)
    tree = [root, *root.children(recursive=True)]
    for process in tree:
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree[1:], timeout=30)
    return len(tree)


@pytest.mark.integration
def test_kill_9_of_the_service_during_feedback_loses_no_acknowledged_event(
    smoke_store: Path, store_url: str, tmp_path: Path
) -> None:
    acknowledged: list[str] = []
    stop = threading.Event()
    with running_service(Paths.from_environment(), store_url, tmp_path / "server.log", STARTUP_LIMIT_SECONDS) as server:
        decided = _routed_decisions(server, 3)
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            clients = [
                pool.submit(_feedback_until_killed, server, number, decided, acknowledged, stop)
                for number in range(CLIENTS)
            ]
            try:
                deadline = time.monotonic() + KILL_WAIT_SECONDS
                while len(acknowledged) < ACKNOWLEDGED_BEFORE_KILL and time.monotonic() < deadline:
                    assert not any(client.done() for client in clients), [client.exception() for client in clients]
                    time.sleep(0.01)
                killed = _kill_9_tree(server.process.pid)  # mid-write
            finally:
                stop.set()  # a failure above must not leave the clients posting
            assert server.process.wait() == -signal.SIGKILL
            assert killed >= 2, "the server and at least one worker"
            for client in clients:
                client.result()
    assert len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL
    store = FeedbackStore(store_url)
    stored = [item.event.event_id for item in store.since(0)]
    store.close()
    assert sorted(set(acknowledged) - set(stored)) == []
    assert len(stored) == len(set(stored))
