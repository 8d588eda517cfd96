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


def retry_claim(owner: str, header: str | None, request: DecisionRequest, now: datetime) -> RetryClaim | None:
    """The claim a request makes for `owner` (an API key id), or None when it can be no retry (no
    header, no deal_id). Raises IdempotencyKeyError for an empty or over-long header."""
    since = now - REPLAY_WINDOW
    if header is not None:
        if not 1 <= len(header) <= MAX_IDEMPOTENCY_KEY_CHARS:
            raise IdempotencyKeyError(
                _HEADER_FIELD, f"must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters, not {len(header)}"
            )
        return RetryClaim(owner, f"header:{header}", since)
    if request.deal.deal_id is None:
        return None
    body = hashlib.sha256(request.model_dump_json().encode()).hexdigest()
    return RetryClaim(owner, f"deal:{request.deal.deal_id}:{body}", since)


@dataclass(frozen=True)
class Decided:
    """The answer to a decision request: the logged response (JSON text) and whether it is a replay."""

    response_json: str
    replayed: bool


def record_decision(
    log: DecisionLog, request: DecisionRequest, response: DecisionResponse, retry: RetryClaim | None = None
) -> LoggedDecision:
    """Append one decision (request, response, model) to the log; see `DecisionLog.append`."""
    return log.append(
        response.decision_id,
        response.model.name,
        response.model.version,
        request.model_dump_json(),
        response.model_dump_json(),
        retry,
    )


def decide_once(
    log: DecisionLog,
    request: RequestT,
    retry: RetryClaim | None,
    decide: Callable[[RequestT], DecisionResponse],
) -> Decided:
    """Decide (route, assemble a team) and log the request, unless `retry` names a live earlier
    decision: then that decision (same body) or IdempotencyConflictError (another body). `decide`
    raises FeatureError subclasses."""
    earlier = None if retry is None else log.find_retry(retry)
    if earlier is not None:
        return _replay(earlier, request)
    response = decide(request)
    logged = record_decision(log, request, response, retry)
    if logged.decision_id != response.decision_id:  # a concurrent retry logged first
        return _replay(logged, request)
    return Decided(logged.response_json, replayed=False)


def _replay(earlier: LoggedDecision, request: DecisionRequest) -> Decided:
    if earlier.request_json != request.model_dump_json():
        raise IdempotencyConflictError(
            _HEADER_FIELD,
            f"was used for decision {earlier.decision_id} with a different body; use a new key for a new request",
        )
    return Decided(earlier.response_json, replayed=True)
