"""Safe retries: a retried request gets the original decision back instead of a second one.

Decisions are what `POST /route` and `POST /team` answer; both are logged and both take retries.

A request is a retry of an earlier one when, for the same API key and within `REPLAY_WINDOW`:
- it carries the same `Idempotency-Key` header: the same body gets the earlier decision back
  (response header `Idempotent-Replayed: true`), a different body gets 409;
- or, without the header, it has the same `deal.deal_id` and the same body. A changed deal under the
  same `deal_id` is a new question and gets a new decision.
Bodies are compared after validation (`model_dump_json()` of the request), so key order, spacing
and defaults spelt out or left implicit do not matter. The claim is written with the decision in one
transaction (`DecisionLog.append`), so two concurrent retries log one decision between them.

A request is routed before its claim is checked (in that transaction): a new request, by far the
common case, costs no extra database read, and a retry costs one routing whose answer is dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from features.pairs import FeatureError
from serving.decision_log import DecisionLog, LoggedDecision, RetryClaim
from serving.schemas import DealIn, ModelInfo

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_IDEMPOTENCY_KEY_CHARS = 255
REPLAY_WINDOW = timedelta(hours=24)
_HEADER_FIELD = f"headers.{IDEMPOTENCY_HEADER.lower()}"


class DecisionRequest(Protocol):
    """A request that gets a logged decision (`RouteRequest`, `TeamRequest`)."""

    @property
    def deal(self) -> DealIn: ...

    def model_dump_json(self) -> str: ...


class DecisionResponse(Protocol):
    """Its answer (`RouteResponse`, `TeamResponse`): a fresh decision id and the model that answered."""

    @property
    def decision_id(self) -> str: ...

    @property
    def model(self) -> ModelInfo: ...

    def model_dump_json(self) -> str: ...


RequestT = TypeVar("RequestT", bound=DecisionRequest)


class IdempotencyKeyError(FeatureError):
    """A malformed `Idempotency-Key` header (maps to HTTP 400)."""


class IdempotencyConflictError(FeatureError):
    """An `Idempotency-Key` reused with a different body (maps to HTTP 409)."""


def retry_claim(
    owner: str, header: str | None, deal_id: str | None, request_json: str, now: datetime
) -> RetryClaim | None:
    """The claim a request (`request_json`: the request's `model_dump_json()`, for `deal_id`) makes for
    `owner` (an API key id), or None when it can be no retry (no header, no deal_id). Raises
    IdempotencyKeyError for an empty or over-long header."""
    since = now - REPLAY_WINDOW
    if header is not None:
        if not 1 <= len(header) <= MAX_IDEMPOTENCY_KEY_CHARS:
            raise IdempotencyKeyError(
                _HEADER_FIELD, f"must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters, not {len(header)}"
            )
        return RetryClaim(owner, f"header:{header}", since)
    if deal_id is None:
        return None
    body = hashlib.sha256(request_json.encode()).hexdigest()
    return RetryClaim(owner, f"deal:{deal_id}:{body}", since)


@dataclass(frozen=True)
class Decided:
    """The answer to a decision request: the logged response (JSON text) and whether it is a replay."""

    response_json: str
    replayed: bool


def record_decision(
    log: DecisionLog,
    request_json: str,
    response: DecisionResponse,
    retry: RetryClaim | None = None,
) -> LoggedDecision:
    """Append one decision (the request as its `model_dump_json()`, the response, the model)
    to the log; see `DecisionLog.append`."""
    return log.append(
        response.decision_id,
        response.model.name,
        response.model.version,
        request_json,
        response.model_dump_json(),
        retry,
    )


def decide_once(
    log: DecisionLog,
    request: RequestT,
    request_json: str,
    retry: RetryClaim | None,
    decide: Callable[[RequestT], DecisionResponse],
) -> Decided:
    """Decide (route, assemble a team) and log the request (`request_json`: its `model_dump_json()`),
    unless `retry` names a live earlier decision: then that decision (same body) or
    IdempotencyConflictError (another body). `decide` raises FeatureError subclasses."""
    response = decide(request)
    logged = record_decision(log, request_json, response, retry)
    if logged.decision_id == response.decision_id:
        return Decided(logged.response_json, replayed=False)
    if logged.request_json != request_json:
        raise IdempotencyConflictError(
            _HEADER_FIELD,
            f"was used for decision {logged.decision_id} with a different body; use a new key for a new request",
        )
    return Decided(logged.response_json, replayed=True)
