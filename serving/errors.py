"""The one error shape of the API (`ErrorResponse`: error, field, reason, problems[]) and the statuses.

`ERROR_STATUSES` says what each status means (the OpenAPI document is written from it);
`status_of` maps a domain error to its status; `normalized_error` rewrites an error answer that some
other layer produced (Starlette's text 404/405, BentoML's validation 400, FastAPI's `{"detail"}`)
into the one shape.
"""

from __future__ import annotations

import json
from typing import Any

from features.pairs import FeatureError
from serving.idempotency import IdempotencyConflictError, IdempotencyKeyError
from serving.routing import RoutingConflictError, UnknownPartnerError
from serving.schemas import ErrorResponse, FieldProblem

# Every status the service answers with besides 200, and what it means to a caller.
ERROR_STATUSES: dict[int, str] = {
    400: "A malformed header: an `Idempotency-Key` that is empty or longer than 255 characters.",
    401: "No API key, or a wrong or revoked one (`Authorization: Bearer <key>` or `X-API-Key: <key>`).",
    403: "The API key lacks the scope this operation needs.",
    404: "No such decision, partner id or endpoint.",
    405: "The endpoint exists but not with this method (see the `Allow` header).",
    409: "The request cannot be satisfied as stated (no partner meets the constraints, the protected "
    "registered partner is excluded), or an `Idempotency-Key` was reused with a different body.",
    413: "The request body is larger than the limit.",
    415: "The request body is not `application/json`.",
    422: "A malformed body or a bad value (unknown product or region, amount <= 0, ...).",
    429: "Too many requests for this API key; retry after `Retry-After` seconds.",
    500: "An unexpected error (a bug); the server log has the details.",
    503: "A store (API keys or decision log) is temporarily unavailable; retry after `Retry-After` seconds. "
    "Or a model the endpoint needs is not registered: the error names the command that trains it.",
}


def status_of(error: FeatureError) -> int:
    """HTTP status of a domain error: 404 unknown partner, 409 unsatisfiable or reused key with another
    body, 400 malformed idempotency key, else 422 (a bad value)."""
    if isinstance(error, UnknownPartnerError):
        return 404
    if isinstance(error, RoutingConflictError | IdempotencyConflictError):
        return 409
    if isinstance(error, IdempotencyKeyError):
        return 400
    return 422


def error_body(problems: list[FieldProblem], model_version: str | None = None) -> ErrorResponse:
    """The first problem up front, then all of them."""
    first = problems[0]
    return ErrorResponse(
        error=f"{first.field}: {first.reason}",
        field=first.field,
        reason=first.reason,
        problems=problems,
        model_version=model_version,
    )


def error_json(field: str, reason: str, model_version: str | None = None) -> bytes:
    """The body of an error with one problem, as JSON bytes."""
    return error_body([FieldProblem(field=field, reason=reason)], model_version).model_dump_json().encode()


# Who is at fault in an answer from another layer, by status.
_FOREIGN_FIELDS = {404: "path", 405: "method", 413: "body", 415: "headers.content-type"}


def normalized_error(status: int, body: bytes, method: str, path: str) -> tuple[int, bytes] | None:
    """(status, body) in the one shape for an error answer produced outside our code, or None when
    `body` already has the shape. BentoML's request-validation 400 (pydantic's error list) becomes a
    422 listing every failing field as a dotted path (`deal.amount`)."""
    payload = _json(body)
    if isinstance(payload, dict) and {"error", "field", "reason", "problems"} <= payload.keys():
        return None
    errors = payload.get("detail") if isinstance(payload, dict) else None
    if status == 400 and isinstance(errors, list) and errors and all(isinstance(item, dict) for item in errors):
        problems = [
            FieldProblem(
                field=".".join(str(part) for part in error.get("loc", ())) or "body",
                reason=str(error.get("msg", "invalid")),
            )
            for error in errors
        ]
        return 422, error_body(problems).model_dump_json().encode()
    field = _FOREIGN_FIELDS.get(status, "request" if status < 500 else "server")
    return status, error_json(field, _foreign_reason(status, payload, method, path))


def _foreign_reason(status: int, payload: Any, method: str, path: str) -> str:
    if status == 404:
        return f"no endpoint {method} {path}; the API is described at /docs"
    if status == 405:
        return f"{path} does not accept {method}; see the Allow header"
    if status >= 500:
        return "unexpected error; the server log has the details"
    message = payload.get("error") or payload.get("detail") if isinstance(payload, dict) else None
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        message = payload[0].get("error")  # BentoML wraps some errors in a list
    return str(message) if message else f"HTTP {status}"


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None
