"""The feedback store: every outcome and engagement event the CRM reported, durable in the service's
database (`serving.stores`: table `feedback_events`, SQLite or PostgreSQL behind one URL).

One row per event (`FeedbackEvent`), numbered by `seq` in the order they were accepted. An event is
identified by the CRM's `event_id`: recording the same id again with the same body (its digest) is
a replay and returns the stored event; with another body it raises `FeedbackStoreConflictError`. Outcomes
are unique per (decision, partner): a second outcome for the same attempt is a conflict too.

Writers take turns (`serving.stores.lock_for_writers`): the checks and the insert see every event
committed before, across workers and replicas, and events become visible in `seq` order, so a reader
that has seen event n has seen every event before it. Live features (`serving.feedback.LiveRouter`)
and `partnermatch retrain` (a champion's `feedback_sequence` tag) read "every event after n".

Durability: one transaction per event, committed (SQLite `synchronous=FULL`, PostgreSQL
`synchronous_commit=on`) before `record` returns, so a crash or `kill -9` loses no acknowledged
event. A database that cannot be reached or stays locked raises `sqlalchemy.exc.SQLAlchemyError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from serving.stores import FEEDBACK_EVENTS, lock_for_writers, open_engine, write_transaction

FeedbackKind = Literal["outcome", "engagement"]

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
    """Record and read feedback events in the database at `url` (migrated: `serving.stores.upgrade_database`)."""

    def __init__(self, url: str) -> None:
        self._engine = open_engine(url)

    def record(self, event: FeedbackEvent) -> StoredFeedback:
        """Store `event` (committed when this returns), or return the stored one when its id was
        recorded with the same body. Raises FeedbackStoreConflictError (field `event_id`: same id, other body;
        field `partner_ids`: that decision already has an outcome for one of these partners)."""
        with write_transaction(self._engine) as connection:
            lock_for_writers(connection, FEEDBACK_EVENTS)
            earlier = connection.execute(
                sa.select(FEEDBACK_EVENTS).where(FEEDBACK_EVENTS.c.event_id == event.event_id)
            ).first()
            if earlier is not None:
                stored = _stored(earlier, replayed=True)
                if stored.event.body_digest != event.body_digest:
                    raise FeedbackStoreConflictError(
                        "event_id", f"event {event.event_id!r} was recorded with a different body"
                    )
                return stored
            if event.kind == "outcome":
                _check_attempts_are_open(connection, event)
            insert = FEEDBACK_EVENTS.insert().values(**_row(event)).returning(FEEDBACK_EVENTS.c.seq)
            return StoredFeedback(seq=int(connection.execute(insert).scalar_one()), event=event, replayed=False)

    def since(self, seq: int) -> list[StoredFeedback]:
        """Every event with a sequence number above `seq`, in acceptance order."""
        query = sa.select(FEEDBACK_EVENTS).where(FEEDBACK_EVENTS.c.seq > seq).order_by(FEEDBACK_EVENTS.c.seq)
        with self._engine.connect() as connection:
            return [_stored(row, replayed=False) for row in connection.execute(query)]

    def latest_seq(self) -> int:
        """The sequence number of the latest event, 0 when there is none (one indexed read)."""
        with self._engine.connect() as connection:
            latest = connection.execute(sa.select(sa.func.max(FEEDBACK_EVENTS.c.seq))).scalar_one()
        return int(latest or 0)

    def close(self) -> None:
        """Close the connections; the object is unusable afterwards."""
        self._engine.dispose()


def _check_attempts_are_open(connection: sa.Connection, event: FeedbackEvent) -> None:
    rows = connection.execute(
        sa.select(FEEDBACK_EVENTS.c.event_id, FEEDBACK_EVENTS.c.partner_ids).where(
            FEEDBACK_EVENTS.c.decision_id == event.decision_id, FEEDBACK_EVENTS.c.kind == "outcome"
        )
    )
    for other_id, partner_cell in rows:
        closed = set(partner_cell.split(_SEPARATOR)) & set(event.partner_ids)
        if closed:
            raise FeedbackStoreConflictError(
                "partner_ids",
                f"decision {event.decision_id!r} already has an outcome for {sorted(closed)} (event {other_id!r})",
            )


def _text(moment: datetime | None) -> str | None:
    """Fixed-width UTC ISO 8601 (text order is time order), None kept."""
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="microseconds")


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _row(event: FeedbackEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "body_digest": event.body_digest,
        "received_at": _text(event.received_at),
        "kind": event.kind,
        "occurred_at": _text(event.occurred_at),
        "partner_ids": _SEPARATOR.join(event.partner_ids),
        "engagement_kind": event.engagement_kind,
        "decision_id": event.decision_id,
        "deal_id": event.deal_id,
        "won": event.won,
        "amount": event.amount,
        "deal_created_at": _text(event.deal_created_at),
        "deal_region": event.deal_region,
        "deal_products": _SEPARATOR.join(event.deal_products) if event.deal_products else None,
    }


def _stored(row: sa.Row[Any], replayed: bool) -> StoredFeedback:
    event = FeedbackEvent(
        event_id=row.event_id,
        body_digest=row.body_digest,
        received_at=datetime.fromisoformat(row.received_at),
        kind="outcome" if row.kind == "outcome" else "engagement",
        occurred_at=datetime.fromisoformat(row.occurred_at),
        partner_ids=tuple(row.partner_ids.split(_SEPARATOR)),
        engagement_kind=row.engagement_kind,
        decision_id=row.decision_id,
        deal_id=row.deal_id,
        won=row.won,
        amount=row.amount,
        deal_created_at=_time(row.deal_created_at),
        deal_region=row.deal_region,
        deal_products=tuple(row.deal_products.split(_SEPARATOR)) if row.deal_products else (),
    )
    return StoredFeedback(seq=int(row.seq), event=event, replayed=replayed)
