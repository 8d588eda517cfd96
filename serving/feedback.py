"""Feedback: CRM outcomes and engagement events in, live routing features out.

`accept_feedback` validates an event against the decision log and the served catalogue (unknown
decision or partner: 404 naming it; a deal id that is not the routed deal's, or a close before the
routing: 422), stores it durably (`serving.feedback_store`; same id + same body answers the same,
another body is a 409) and only then answers.

Live features. `LiveRouter` serves the bundle's routing state with every accepted event layered on
top (`features.pairs.with_events`: the bundle's frozen, memory-mapped sums plus a small in-memory
index of the events), so win rates, load against capacity and engagement move without a retrain.
Requests are routed as of the latest event (or just after the bundle's history end when there is
none), and the capacity filter reads the live load. The history shortlists (retrieval only) stay
the bundle's until the next retrain.

Consistency across workers and replicas: the feedback store (the service's database) is the single
source of truth. Every worker keeps its own delta and, before each route, reads the store's latest
sequence number (one indexed read; events become visible in sequence order, `serving.feedback_store`);
when it moved, the worker rebuilds its delta from all events since the bundle (cost: sorting them; a
retrain folds them into the next bundle). So every route sees every event acknowledged
before the route started, in any worker, and two workers at the same sequence number route alike.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from features import schema
from features.pairs import FeatureError, to_seconds, with_events
from serving.decision_log import DecisionLog
from serving.feedback_store import FeedbackEvent, FeedbackStore, FeedbackStoreConflictError, StoredFeedback
from serving.routing import Router
from serving.routing.state import partner_load_ratio
from serving.schemas import DealIn, EngagementIn, FeedbackRequest, FeedbackResponse, OutcomeIn


class UnknownReferenceError(FeatureError):
    """The event names a decision or partner that does not exist (404)."""


class FeedbackConflictError(FeatureError):
    """The event id was used with another body, or the attempt already has an outcome (409)."""


def body_digest(request: FeedbackRequest) -> str:
    """sha256 of the request's canonical JSON: equal for equal bodies, whatever the key order."""
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


def resolve_event(
    request: FeedbackRequest, decisions: DecisionLog, partner_position: dict[str, int], now: datetime
) -> FeedbackEvent:
    """The storable event: the request checked against the decision it closes and the catalogue.
    Raises UnknownReferenceError (`event.decision_id`, `event.partner_ids`, `event.partner_id`) or
    FeatureError (`event.deal_id`, `event.closed_at`, `event.occurred_at`: 422)."""
    event = request.event
    digest = body_digest(request)
    partner_ids = tuple(event.partner_ids) if isinstance(event, OutcomeIn) else (event.partner_id,)
    field = "event.partner_ids" if isinstance(event, OutcomeIn) else "event.partner_id"
    unknown = [partner_id for partner_id in partner_ids if partner_id not in partner_position]
    if unknown:
        raise UnknownReferenceError(field, f"unknown partner(s) {unknown[:5]}")
    if isinstance(event, EngagementIn):
        _not_in_future("event.occurred_at", event.occurred_at, now)
        return FeedbackEvent(
            event_id=request.event_id,
            body_digest=digest,
            received_at=now,
            kind="engagement",
            occurred_at=event.occurred_at.astimezone(UTC),
            partner_ids=partner_ids,
            engagement_kind=event.kind,
        )
    logged = decisions.get(event.decision_id)
    if logged is None:
        raise UnknownReferenceError("event.decision_id", f"no decision {event.decision_id!r} is logged")
    # A /route or /team decision: both requests carry the deal under `deal`.
    routed = DealIn.model_validate(json.loads(logged.request_json)["deal"])
    if event.deal_id is not None and routed.deal_id is not None and event.deal_id != routed.deal_id:
        raise FeatureError("event.deal_id", f"decision {event.decision_id!r} routed deal {routed.deal_id!r}")
    if event.closed_at < logged.logged_at:
        raise FeatureError("event.closed_at", f"before the deal was routed ({logged.logged_at.isoformat()})")
    _not_in_future("event.closed_at", event.closed_at, now)
    return FeedbackEvent(
        event_id=request.event_id,
        body_digest=digest,
        received_at=now,
        kind="outcome",
        occurred_at=event.closed_at.astimezone(UTC),
        partner_ids=partner_ids,
        decision_id=event.decision_id,
        deal_id=event.deal_id or routed.deal_id,
        won=event.result == "won",
        amount=event.amount or routed.amount,
        deal_created_at=logged.logged_at,
        deal_region=routed.region,
        deal_products=tuple(routed.products),
    )


def _not_in_future(field: str, moment: datetime, now: datetime) -> None:
    if moment > now + CLOCK_SKEW:
        raise FeatureError(field, f"in the future (the server's time is {now.isoformat()})")


CLOCK_SKEW = pd.Timedelta(minutes=5).to_pytimedelta()  # CRM clocks may run this far ahead of ours


def feedback_tables(events: list[FeedbackEvent]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(deals, outcomes, engagement) in schema columns, times naive UTC: what the events add to the
    history. Each routed deal is keyed by its decision id (one deal per decision); a team outcome
    gives one outcome row per member, sharing the event id as team id."""
    outcomes = [event for event in events if event.kind == "outcome"]
    engagement = [event for event in events if event.kind == "engagement"]
    deals = pd.DataFrame(
        {
            schema.DEAL_ID: [event.decision_id for event in outcomes],
            schema.CREATED_AT: [_naive(event.deal_created_at or event.occurred_at) for event in outcomes],
            schema.DEAL_REGION: [event.deal_region for event in outcomes],
            schema.DEAL_PRODUCTS: [schema.join_list(event.deal_products) for event in outcomes],
            schema.AMOUNT: [event.amount for event in outcomes],
        },
        columns=[schema.DEAL_ID, schema.CREATED_AT, schema.DEAL_REGION, schema.DEAL_PRODUCTS, schema.AMOUNT],
    ).drop_duplicates(schema.DEAL_ID)
    attempts = [(event, partner_id) for event in outcomes for partner_id in event.partner_ids]
    outcome_rows = pd.DataFrame(
        {
            schema.DEAL_ID: [event.decision_id for event, _ in attempts],
            schema.PARTNER_ID: [partner_id for _, partner_id in attempts],
            schema.WON: np.array([bool(event.won) for event, _ in attempts], dtype=bool),
            schema.CLOSED_AT: pd.to_datetime([_naive(event.occurred_at) for event, _ in attempts]),
            schema.TEAM_ID: [event.event_id if len(event.partner_ids) > 1 else "" for event, _ in attempts],
        }
    )
    engagement_rows = pd.DataFrame(
        {
            schema.PARTNER_ID: [event.partner_ids[0] for event in engagement],
            schema.OCCURRED_AT: pd.to_datetime([_naive(event.occurred_at) for event in engagement]),
            schema.EVENT_KIND: [event.engagement_kind for event in engagement],
        }
    )
    deals[schema.CREATED_AT] = pd.to_datetime(deals[schema.CREATED_AT])
    return deals, outcome_rows, engagement_rows


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


class LiveRouter:
    """The bundle's router with the feedback store's events layered on (see the module docstring).
    `applied_after`: events with a sequence number up to it are already in the bundle's history."""

    def __init__(self, base: Router, store: FeedbackStore, applied_after: int = 0) -> None:
        self.base = base
        self.store = store
        self.applied_after = applied_after
        self._lock = threading.Lock()
        self._events: list[FeedbackEvent] = []
        self._seq = applied_after
        self._router = base
        self.current()

    def current(self) -> Router:
        """The router over every event accepted so far (rebuilt when the store has new ones)."""
        with self._lock:
            latest = self.store.latest_seq()
            if latest != self._seq:
                stored: list[StoredFeedback] = self.store.since(self._seq)
                self._events.extend(item.event for item in stored)
                self._seq = max([self._seq, *(item.seq for item in stored)])
                self._router = live_router(self.base, self._events)
            return self._router


def live_router(base: Router, events: list[FeedbackEvent]) -> Router:
    """`base` with `events` in its history: live context, routing time and load ratios."""
    if not events:
        return base
    return router_with_history(base, *feedback_tables(events))


def router_with_history(
    base: Router,
    deals: pd.DataFrame,
    outcomes: pd.DataFrame,
    engagement: pd.DataFrame,
    as_of_seconds: int | None = None,
) -> Router:
    """`base` with more history (`features.pairs.with_events` tables), routing as of `as_of_seconds`
    (seconds since 1970; default and lower bound: just after the latest event), with the load
    ratios of that moment."""
    state = base.state
    context = with_events(state.context, deals, outcomes, engagement)
    after_history = max(state.as_of_seconds, int(to_seconds([context.history_end])[0]) + 1)
    as_of_seconds = max(after_history, as_of_seconds or 0)
    load_ratio = partner_load_ratio(context, as_of_seconds)
    load_ratio.flags.writeable = False
    return Router.from_state(replace(state, context=context, as_of_seconds=as_of_seconds, load_ratio=load_ratio))


def accept_feedback(
    request: FeedbackRequest, store: FeedbackStore, decisions: DecisionLog, live: LiveRouter, now: datetime
) -> FeedbackResponse:
    """Check, store (durably) and answer one event; the live features include it from the next
    route on. Raises UnknownReferenceError, FeatureError or FeedbackConflictError."""
    # The catalogue and the model are the bundle's: checking an event needs no live features.
    router = live.base
    event = resolve_event(request, decisions, router.context.partner_position, now)
    try:
        stored = store.record(event)
    except FeedbackStoreConflictError as conflict:
        field = conflict.field if conflict.field == "event_id" else f"event.{conflict.field}"
        raise FeedbackConflictError(field, conflict.reason) from conflict
    return FeedbackResponse(
        event_id=stored.event.event_id,
        sequence=stored.seq,
        accepted_at=stored.event.received_at,
        replayed=stored.replayed,
        model=router.model_info,
    )
