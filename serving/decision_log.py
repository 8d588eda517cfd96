"""The decision log: every routing decision, durable in SQLite (WAL journal).

One row per decision: its id, when it was logged, the model name and version that answered, and
the request and response as JSON text. A decision may carry a retry claim (who asked, under which
idempotency key): it is written in the same transaction, so of two concurrent retries only one logs
a decision and the other gets that one back. Writers in several processes (service workers, the CLI)
can share one file: WAL lets readers run beside a writer, and `busy_timeout` waits out the short
write locks instead of failing.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id   TEXT PRIMARY KEY,
    logged_at     TEXT NOT NULL,
    model_name    TEXT NOT NULL,
    model_version TEXT NOT NULL,
    request_json  TEXT NOT NULL,
    response_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS retries (
    owner       TEXT NOT NULL,
    retry_key   TEXT NOT NULL,
    decision_id TEXT NOT NULL REFERENCES decisions (decision_id),
    claimed_at  TEXT NOT NULL,
    PRIMARY KEY (owner, retry_key)
);
"""
_COLUMNS = "decision_id, logged_at, model_name, model_version, request_json, response_json"


@dataclass(frozen=True)
class LoggedDecision:
    decision_id: str
    logged_at: datetime  # UTC
    model_name: str
    model_version: str
    request_json: str
    response_json: str


@dataclass(frozen=True)
class RetryClaim:
    """`owner` (an API key id) claims `key` for a decision; claims made before `since` have expired."""

    owner: str
    key: str
    since: datetime  # UTC


class DecisionLog:
    """Append and look up decisions in the SQLite file at `path` (created with its directory)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection per log, shared by the service's threads under a lock.
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._connection.execute("PRAGMA journal_mode=WAL")
            # FULL: a decision acknowledged to the caller survives a power cut, not just a crash.
            self._connection.execute("PRAGMA synchronous=FULL")
            self._connection.executescript(_SCHEMA)

    def append(
        self,
        decision_id: str,
        model_name: str,
        model_version: str,
        request_json: str,
        response_json: str,
        retry: RetryClaim | None = None,
    ) -> LoggedDecision:
        """Store one decision (committed when this returns) and return it. With `retry`, when a live
        claim on the same (owner, key) exists, nothing is written and the claimed decision is returned
        instead (its `decision_id` differs). A repeated `decision_id` raises ValueError."""
        logged_at = datetime.now(UTC)
        logged = LoggedDecision(decision_id, logged_at, model_name, model_version, request_json, response_json)
        with self._lock:
            # IMMEDIATE: the write lock is taken before the claim is read, so no other writer (thread
            # or process) can claim the same key in between.
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                earlier = None if retry is None else self._claimed(retry)
                if earlier is None:
                    self._insert(logged, retry)
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")
        return logged if earlier is None else earlier

    def _insert(self, logged: LoggedDecision, retry: RetryClaim | None) -> None:
        try:
            self._connection.execute(
                f"INSERT INTO decisions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    logged.decision_id,
                    logged.logged_at.isoformat(),
                    logged.model_name,
                    logged.model_version,
                    logged.request_json,
                    logged.response_json,
                ),
            )
        except sqlite3.IntegrityError as error:
            raise ValueError(f"decision {logged.decision_id!r} is already logged") from error
        if retry is not None:
            self._connection.execute(
                "INSERT OR REPLACE INTO retries VALUES (?, ?, ?, ?)",
                (retry.owner, retry.key, logged.decision_id, _timestamp(logged.logged_at)),
            )

    def find_retry(self, retry: RetryClaim) -> LoggedDecision | None:
        """The decision of a live claim on (owner, key), or None."""
        with self._lock:
            return self._claimed(retry)

    def _claimed(self, retry: RetryClaim) -> LoggedDecision | None:
        row = self._connection.execute(
            f"SELECT {', '.join('d.' + column for column in _COLUMNS.split(', '))} FROM retries r "
            "JOIN decisions d ON d.decision_id = r.decision_id "
            "WHERE r.owner = ? AND r.retry_key = ? AND r.claimed_at >= ?",
            (retry.owner, retry.key, _timestamp(retry.since)),
        ).fetchone()
        return None if row is None else _logged(row)

    def get(self, decision_id: str) -> LoggedDecision | None:
        """The decision with this id, or None."""
        with self._lock:
            row = self._connection.execute(
                f"SELECT {_COLUMNS} FROM decisions WHERE decision_id = ?", (decision_id,)
            ).fetchone()
        return None if row is None else _logged(row)

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._connection.execute("SELECT COUNT(*) FROM decisions").fetchone()
        return int(count)

    def recent(self, limit: int) -> list[LoggedDecision]:
        """The latest `limit` decisions, newest first."""
        with self._lock:
            rows = self._connection.execute(
                f"SELECT {_COLUMNS} FROM decisions ORDER BY logged_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_logged(row) for row in rows]

    def close(self) -> None:
        """Close the connection; the object is unusable afterwards."""
        with self._lock:
            self._connection.close()


def _logged(row: tuple[str, str, str, str, str, str]) -> LoggedDecision:
    return LoggedDecision(row[0], datetime.fromisoformat(row[1]), row[2], row[3], row[4], row[5])


def _timestamp(moment: datetime) -> str:
    """Fixed-width UTC ISO 8601, so that text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
