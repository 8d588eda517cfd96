"""The decision log: every routing decision, durable in SQLite (WAL journal).

One row per decision: its id, when it was logged, the model name and version that answered, and
the request and response as JSON text. Writers in several processes (service workers, the CLI)
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
)
"""


@dataclass(frozen=True)
class LoggedDecision:
    decision_id: str
    logged_at: datetime  # UTC
    model_name: str
    model_version: str
    request_json: str
    response_json: str


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
            self._connection.execute(_SCHEMA)

    def append(
        self, decision_id: str, model_name: str, model_version: str, request_json: str, response_json: str
    ) -> LoggedDecision:
        """Store one decision (committed when this returns). A repeated `decision_id` raises ValueError."""
        logged_at = datetime.now(UTC)
        try:
            with self._lock:
                self._connection.execute(
                    "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?)",
                    (decision_id, logged_at.isoformat(), model_name, model_version, request_json, response_json),
                )
        except sqlite3.IntegrityError as error:
            raise ValueError(f"decision {decision_id!r} is already logged") from error
        return LoggedDecision(decision_id, logged_at, model_name, model_version, request_json, response_json)

    def get(self, decision_id: str) -> LoggedDecision | None:
        """The decision with this id, or None."""
        with self._lock:
            row = self._connection.execute(
                "SELECT decision_id, logged_at, model_name, model_version, request_json, response_json "
                "FROM decisions WHERE decision_id = ?",
                (decision_id,),
            ).fetchone()
        if row is None:
            return None
        return LoggedDecision(row[0], datetime.fromisoformat(row[1]), row[2], row[3], row[4], row[5])

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._connection.execute("SELECT COUNT(*) FROM decisions").fetchone()
        return int(count)

    def close(self) -> None:
        """Close the connection; the object is unusable afterwards."""
        with self._lock:
            self._connection.close()
