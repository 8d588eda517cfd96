"""The feedback store: every outcome and engagement event the CRM reported, durable in SQLite.

One row per event (`FeedbackEvent`), numbered by `seq` in the order they were accepted. An event is
identified by the CRM's `event_id`: recording the same id again with the same body (its digest) is
a replay and returns the stored event; with another body it raises `FeedbackStoreConflictError`. Outcomes
are unique per (decision, partner): a second outcome for the same attempt is a conflict too.

Durability: WAL journal and `synchronous=FULL`, one transaction per event, so an event is on disk
when `record` returns (a crash or `kill -9` loses no acknowledged event). Several processes (service
workers, the CLI) can share the file. The interface (`record`, `since`, `latest_seq`, `close`) is
all the rest of the project uses, and every SQL statement is in this module.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from serving.stores import SQLITE_BUSY_SECONDS

FeedbackKind = Literal["outcome", "engagement"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        TEXT NOT NULL UNIQUE,
    body_digest     TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    kind            TEXT NOT NULL,
    occurred_at     TEXT NOT NULL,
    partner_ids     TEXT NOT NULL,
    engagement_kind TEXT,
    decision_id     TEXT,
    deal_id         TEXT,
    won             INTEGER,
    amount          REAL,
    deal_created_at TEXT,
    deal_region     TEXT,
    deal_products   TEXT
);
CREATE INDEX IF NOT EXISTS feedback_by_decision ON feedback (decision_id);
"""
_COLUMNS = (
    "event_id, body_digest, received_at, kind, occurred_at, partner_ids, engagement_kind, decision_id, deal_id, "
    "won, amount, deal_created_at, deal_region, deal_products"
)
_SEPARATOR = "|"


@dataclass(frozen=True)
class FeedbackEvent:
    """One accepted event, resolved against the decision log: everything features need, no lookups.

    Outcome: the deal (`deal_id`, created when `decision_id` was routed, its region, products and
    `amount` USD) was won or lost by `partner_ids` (one partner, or a co-sell team) at `occurred_at`.
    Engagement: `partner_ids` (one) did `engagement_kind` at `occurred_at`. Times are UTC.
    """

    event_id: str
    body_digest: str  # sha256 of the canonical request body: same id + same digest = a replay
    received_at: datetime
    kind: FeedbackKind
    occurred_at: datetime
    partner_ids: tuple[str, ...]
    engagement_kind: str | None = None
    decision_id: str | None = None
    deal_id: str | None = None
    won: bool | None = None
    amount: float | None = None
    deal_created_at: datetime | None = None
    deal_region: str | None = None
    deal_products: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredFeedback:
    seq: int  # > 0, increasing in acceptance order
    event: FeedbackEvent
    replayed: bool  # True when `record` found the same event already stored


class FeedbackStoreConflictError(ValueError):
    """The event cannot be stored: its id was used with another body, or its attempt has an outcome."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class FeedbackStore:
    """Record and read feedback events in the SQLite file at `path` (created with its directory)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._connection = sqlite3.connect(
            self.path, timeout=SQLITE_BUSY_SECONDS, check_same_thread=False, isolation_level=None
        )
        with self._lock:
            self._connection.execute("PRAGMA journal_mode=WAL")
            # FULL: an event acknowledged to the CRM survives a power cut, not just a crash.
            self._connection.execute("PRAGMA synchronous=FULL")
            self._connection.executescript(_SCHEMA)

    def record(self, event: FeedbackEvent) -> StoredFeedback:
        """Store `event` (committed when this returns), or return the stored one when its id was
        recorded with the same body. Raises FeedbackStoreConflictError (field `event_id`: same id, other body;
        field `partner_ids`: that decision already has an outcome for one of these partners)."""
        with self._lock:
            # IMMEDIATE: the write lock is held from the checks to the insert, across processes too.
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                stored = self._record(event)
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")
        return stored

    def _record(self, event: FeedbackEvent) -> StoredFeedback:
        earlier = self._connection.execute(
            f"SELECT seq, {_COLUMNS} FROM feedback WHERE event_id = ?", (event.event_id,)
        ).fetchone()
        if earlier is not None:
            stored = _stored(earlier, replayed=True)
            if stored.event.body_digest != event.body_digest:
                raise FeedbackStoreConflictError(
                    "event_id", f"event {event.event_id!r} was recorded with a different body"
                )
            return stored
        if event.kind == "outcome":
            self._check_attempts_are_open(event)
        cursor = self._connection.execute(
            f"INSERT INTO feedback ({_COLUMNS}) VALUES ({', '.join('?' * 14)})", _row(event)
        )
        return StoredFeedback(seq=int(cursor.lastrowid or 0), event=event, replayed=False)

    def _check_attempts_are_open(self, event: FeedbackEvent) -> None:
        rows = self._connection.execute(
            "SELECT event_id, partner_ids FROM feedback WHERE kind = 'outcome' AND decision_id = ?",
            (event.decision_id,),
        ).fetchall()
        for other_id, partner_cell in rows:
            closed = set(partner_cell.split(_SEPARATOR)) & set(event.partner_ids)
            if closed:
                raise FeedbackStoreConflictError(
                    "partner_ids",
                    f"decision {event.decision_id!r} already has an outcome for {sorted(closed)} (event {other_id!r})",
                )

    def since(self, seq: int) -> list[StoredFeedback]:
        """Every event with a sequence number above `seq`, in acceptance order."""
        with self._lock:
            rows = self._connection.execute(
                f"SELECT seq, {_COLUMNS} FROM feedback WHERE seq > ? ORDER BY seq", (seq,)
            ).fetchall()
        return [_stored(row, replayed=False) for row in rows]

    def latest_seq(self) -> int:
        """The sequence number of the latest event, 0 when there is none (one indexed read)."""
        with self._lock:
            (latest,) = self._connection.execute("SELECT COALESCE(MAX(seq), 0) FROM feedback").fetchone()
        return int(latest)

    def close(self) -> None:
        """Close the connection; the object is unusable afterwards."""
        with self._lock:
            self._connection.close()


def _text(moment: datetime | None) -> str | None:
    """Fixed-width UTC ISO 8601 (text order is time order), None kept."""
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="microseconds")


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _row(event: FeedbackEvent) -> tuple[object, ...]:
    return (
        event.event_id,
        event.body_digest,
        _text(event.received_at),
        event.kind,
        _text(event.occurred_at),
        _SEPARATOR.join(event.partner_ids),
        event.engagement_kind,
        event.decision_id,
        event.deal_id,
        None if event.won is None else int(event.won),
        event.amount,
        _text(event.deal_created_at),
        event.deal_region,
        _SEPARATOR.join(event.deal_products) if event.deal_products else None,
    )


def _stored(row: tuple[object, ...], replayed: bool) -> StoredFeedback:
    (seq, event_id, digest, received, kind, occurred, partners, engagement_kind, decision, deal) = row[:10]
    won, amount, deal_created, region, products = row[10:]
    event = FeedbackEvent(
        event_id=str(event_id),
        body_digest=str(digest),
        received_at=datetime.fromisoformat(str(received)),
        kind="outcome" if kind == "outcome" else "engagement",
        occurred_at=datetime.fromisoformat(str(occurred)),
        partner_ids=tuple(str(partners).split(_SEPARATOR)),
        engagement_kind=None if engagement_kind is None else str(engagement_kind),
        decision_id=None if decision is None else str(decision),
        deal_id=None if deal is None else str(deal),
        won=None if won is None else bool(won),
        amount=None if amount is None else float(str(amount)),
        deal_created_at=_time(None if deal_created is None else str(deal_created)),
        deal_region=None if region is None else str(region),
        deal_products=tuple(str(products).split(_SEPARATOR)) if products else (),
    )
    return StoredFeedback(seq=int(str(seq)), event=event, replayed=replayed)
