"""The decision log: round trip, durability across connections, WAL journal, unique ids."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from serving.decision_log import DecisionLog


def test_round_trip_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "decisions.sqlite"
    log = DecisionLog(path)
    before = datetime.now(UTC)
    log.append("d1", "partnermatch-win", "7", '{"deal": 1}', '{"partners": []}')
    log.close()

    reopened = DecisionLog(path)
    logged = reopened.get("d1")
    assert logged is not None
    assert (logged.model_name, logged.model_version) == ("partnermatch-win", "7")
    assert (logged.request_json, logged.response_json) == ('{"deal": 1}', '{"partners": []}')
    assert before <= logged.logged_at <= datetime.now(UTC)
    assert reopened.get("unknown") is None
    assert len(reopened) == 1
    reopened.close()


def test_wal_journal_and_unique_ids(tmp_path: Path) -> None:
    path = tmp_path / "decisions.sqlite"
    log = DecisionLog(path)
    log.append("d1", "m", "1", "{}", "{}")
    with pytest.raises(ValueError, match="already logged"):
        log.append("d1", "m", "1", "{}", "{}")
    (mode,) = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()
    assert mode == "wal"
    log.close()


def test_two_writers_share_one_file(tmp_path: Path) -> None:
    """Service workers and the CLI may log to the same file at once."""
    path = tmp_path / "decisions.sqlite"
    first, second = DecisionLog(path), DecisionLog(path)
    for index in range(20):
        (first if index % 2 else second).append(f"d{index}", "m", "1", "{}", "{}")
    assert len(first) == len(second) == 20
    first.close()
    second.close()
