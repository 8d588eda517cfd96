"""Two service replicas (`bentoml serve` processes on two loopback ports) sharing one PostgreSQL
database: every decision is logged once, and one idempotency key sent to both at once yields one."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from models.registry import Paths
from partnermatch.bench.route import RunningServer, running_service
from serving.decision_log import DecisionLog
from tests.serving.test_integration import STARTUP_LIMIT_SECONDS
from tests.serving.test_service import DEAL

DISTINCT_DECISIONS = 24
RACES = 6


def _route(server: RunningServer, token: str, body: dict[str, object], key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} | ({"Idempotency-Key": key} if key else {})
    return httpx.post(f"{server.url}/route", json=body, headers=headers, timeout=30.0)


def _same_key_at_once(
    replicas: tuple[RunningServer, ...], token: str, body: dict[str, object], key: str
) -> list[httpx.Response]:
    """`body` under one idempotency key, sent to every replica at the same moment."""
    barrier = threading.Barrier(len(replicas))

    def send(server: RunningServer) -> httpx.Response:
        barrier.wait()
        return _route(server, token, body, key)

    with ThreadPoolExecutor(max_workers=len(replicas)) as pool:
        return list(pool.map(send, replicas))


@pytest.mark.integration
def test_two_replicas_on_one_postgresql_database_lose_and_double_nothing(
    smoke_store: Path, postgres_url: str, tmp_path: Path
) -> None:
    paths = Paths.from_environment()

    def start(name: str) -> RunningServer:
        return stack.enter_context(
            running_service(paths, postgres_url, tmp_path / f"{name}.log", STARTUP_LIMIT_SECONDS)
        )

    with ExitStack() as stack:
        with ThreadPoolExecutor(max_workers=2) as pool:  # both start (and migrate) at once, as replicas do
            replicas = tuple(pool.map(start, ("first", "second")))
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
            answers = _same_key_at_once(replicas, token, body, f"race-{race}")
            assert [answer.status_code for answer in answers] == [200, 200], [answer.text for answer in answers]
            assert answers[0].json() == answers[1].json()
            assert sorted(answer.headers.get("idempotent-replayed", "false") for answer in answers) == ["false", "true"]
            decision_ids.append(answers[0].json()["decision_id"])

    log = DecisionLog(postgres_url)
    assert len(log) == DISTINCT_DECISIONS + RACES
    assert all(log.get(decision_id) is not None for decision_id in decision_ids)
    log.close()
