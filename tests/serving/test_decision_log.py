"""The decision log on SQLite and PostgreSQL: round trip, durability across connections, WAL journal,
unique ids, retry claims written atomically with their decision."""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from serving.decision_log import DecisionLog, RetryClaim
from serving.stores import sqlite_url, upgrade_database


def test_round_trip_survives_reopening(store_url: str) -> None:
    log = DecisionLog(store_url)
    before = datetime.now(UTC)
    log.append("d1", "partnermatch-win", "7", '{"deal": 1}', '{"partners": []}')
    log.close()

    reopened = DecisionLog(store_url)
    logged = reopened.get("d1")
    assert logged is not None
    assert (logged.model_name, logged.model_version) == ("partnermatch-win", "7")
    assert (logged.request_json, logged.response_json) == ('{"deal": 1}', '{"partners": []}')
    assert before <= logged.logged_at <= datetime.now(UTC)
    assert reopened.get("unknown") is None
    assert len(reopened) == 1
    reopened.close()


def test_wal_journal_and_unique_ids(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "decisions.sqlite"
    upgrade_database(sqlite_url(path))
    log = DecisionLog(sqlite_url(path))
    log.append("d1", "m", "1", "{}", "{}")
    with pytest.raises(ValueError, match="already logged"):
        log.append("d1", "m", "1", "{}", "{}")
    (mode,) = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()
    assert mode == "wal"
    log.close()


def test_two_writers_share_one_database(store_url: str) -> None:
    """Service workers and the CLI may log to the same database at once."""
    first, second = DecisionLog(store_url), DecisionLog(store_url)
    for index in range(20):
        (first if index % 2 else second).append(f"d{index}", "m", "1", "{}", "{}")
    assert len(first) == len(second) == 20
    first.close()
    second.close()


def test_a_live_retry_claim_returns_the_earlier_decision_and_writes_nothing(store_url: str) -> None:
    log = DecisionLog(store_url)
    claim = RetryClaim("key-1", "header:abc", since=datetime.now(UTC) - timedelta(hours=1))
    first = log.append("d1", "m", "1", '{"a": 1}', '{"r": 1}', claim)
    second = log.append("d2", "m", "1", '{"a": 1}', '{"r": 2}', claim)
    assert second == first
    assert log.find_retry(claim) == first
    assert len(log) == 1
    other_owner = RetryClaim("key-2", "header:abc", since=claim.since)
    assert log.find_retry(other_owner) is None
    assert log.append("d3", "m", "1", "{}", "{}", other_owner).decision_id == "d3"
    log.close()


def test_an_expired_claim_is_replaced(store_url: str) -> None:
    log = DecisionLog(store_url)
    log.append("d1", "m", "1", "{}", "{}", RetryClaim("k", "deal:1", since=datetime.now(UTC) - timedelta(hours=1)))
    later = RetryClaim("k", "deal:1", since=datetime.now(UTC))  # d1's claim is older than this
    assert log.find_retry(later) is None
    assert log.append("d2", "m", "1", "{}", "{}", later).decision_id == "d2"
    assert log.find_retry(later) == log.get("d2")
    log.close()


def test_concurrent_retries_from_two_processes_log_one_decision(store_url: str) -> None:
    """Two engines (as two workers or replicas would have) race on one claim: one decision is logged,
    and every racer gets that decision back."""
    logs = [DecisionLog(store_url), DecisionLog(store_url)]
    claim = RetryClaim("key-1", "header:race", since=datetime.now(UTC) - timedelta(hours=1))
    start = threading.Barrier(8)

    def racer(index: int) -> str:
        start.wait()
        return logs[index % 2].append(f"d{index}", "m", "1", "{}", "{}", claim).decision_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        winners = set(pool.map(racer, range(8)))
    assert len(winners) == 1
    assert len(logs[0]) == 1
    for log in logs:
        log.close()
