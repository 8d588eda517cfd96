"""ASGI middlewares of the service: thin adapters over `serving.errors`, `serving.keys` and
`serving.ratelimit`. Added outermost first: JsonErrors, SwaggerAtDocs, ApiKeyAuth, BodyLimits."""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import error_json, normalized_error
from serving.keys import AccessPolicy, ApiKey, KeyStore
from serving.ratelimit import RateLimiter, retry_after_header

logger = logging.getLogger(__name__)

CALLER_STATE = "api_key"  # scope["state"] entry holding the caller's ApiKey
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


async def send_error(
    send: Send, status: int, field: str, reason: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer with the one error shape."""
    body = error_json(field, reason)
    await send({"type": "http.response.start", "status": status, "headers": _json_headers(headers or [], body)})
    await send({"type": "http.response.body", "body": body})


def _json_headers(headers: list[tuple[bytes, bytes]], body: bytes) -> list[tuple[bytes, bytes]]:
    kept = [(key, value) for key, value in headers if key.lower() not in (b"content-length", b"content-type")]
    return [*kept, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]


def caller(scope: Scope) -> ApiKey:
    """The API key ApiKeyAuth accepted for this request. Raises LookupError outside ApiKeyAuth."""
    key = scope.get("state", {}).get(CALLER_STATE)
    if not isinstance(key, ApiKey):
        raise LookupError("no authenticated API key on this request: is ApiKeyAuth installed?")
    return key


class JsonErrors:
    """Every error answer in the one shape: rewrites error answers of other layers (Starlette's text
    404/405, BentoML's validation 400 -> 422, FastAPI's `{"detail"}`), and answers an exception that
    escapes the app with a JSON 500 before letting it propagate to the server's log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "HEAD":  # HEAD answers carry no body to rewrite
            await self.app(scope, receive, send)
            return
        held: list[Message] = []
        started = False

        async def send_normalized(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held.append(message)
                return
            if not held:
                started = True
                await send(message)
                return
            held.append(message)
            if message.get("more_body", False):
                return
            started = True
            body = b"".join(part.get("body", b"") for part in held[1:])
            rewritten = normalized_error(held[0]["status"], body, scope["method"], scope["path"])
            status, body = (held[0]["status"], body) if rewritten is None else rewritten
            headers = _json_headers(list(held[0].get("headers", [])), body)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        try:
            await self.app(scope, receive, send_normalized)
        except Exception:
            if not started:
                await send_error(send, 500, "server", "unexpected error; the server log has the details")
            raise


class SwaggerAtDocs:
    """BentoML serves its Swagger UI at `/`; serve the same page at `/docs` too (its relative asset
    and spec URLs resolve the same from there)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/docs":
            scope = {**scope, "path": "/", "raw_path": b"/"}
        await self.app(scope, receive, send)


class ApiKeyAuth:
    """Every path the policy does not make public needs an active API key (401), with the path's scope
    (403), within the key's rate limit (429 with `Retry-After`). The accepted key is left in
    `scope["state"]` (see `caller`). A key store that cannot be read answers 503."""

    def __init__(
        self,
        app: ASGIApp,
        policy: AccessPolicy,
        open_store: Callable[[], KeyStore],
        clock: Callable[[], float] = time.monotonic,
        internal_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.policy = policy
        self.internal_paths = internal_paths
        self.store = open_store()
        self.limiter = RateLimiter()
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.policy.is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.internal_paths:
            await self._internal(scope, receive, send)
            return
        token = presented_token(Headers(scope=scope))
        if token is None:
            await _unauthorized(send, "no API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")
            return
        try:
            # A primary-key read of a small table, not worth a thread hop.
            key = self.store.authenticate(token)
        except SQLAlchemyError:
            logger.exception("the API key store could not be read")
            await send_error(send, 503, "server", "the API key store is unavailable", [(b"retry-after", b"1")])
            return
        if key is None:
            await _unauthorized(send, "unknown or revoked API key")
            return
        needed = self.policy.scope_for(scope["path"])
        if needed is not None and not key.grants(needed):
            await send_error(send, 403, "headers.authorization", f"API key {key.key_id} lacks the scope {needed}")
            return
        wait = self.limiter.wait_seconds(key.key_id, key.rate_limit, self.clock())
        if wait > 0:
            limit = key.rate_limit
            reason = f"rate limit of API key {key.key_id} ({limit.per_second:g}/s, burst {limit.burst}) reached"
            await send_error(
                send, 429, "headers.authorization", reason, [(b"retry-after", retry_after_header(wait).encode())]
            )
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        state[CALLER_STATE] = key
        await self.app(scope, receive, send)

    async def _internal(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A path only the service itself calls (with `internal_token`); to anyone else it does not exist."""
        presented = Headers(scope=scope).get(INTERNAL_HEADER, "")
        if hmac.compare_digest(presented.encode(), internal_token().encode()):
            await self.app(scope, receive, send)
            return
        await send_error(
            send, 404, "path", f"no endpoint {scope['method']} {scope['path']}; the API is described at /docs"
        )


INTERNAL_HEADER = "x-partnermatch-internal"


@functools.cache
def internal_token() -> str:
    """This process's secret for the calls the service makes to itself: an API method that batches
    requests adaptively (BentoML `batchable=True`) is reached through the service's own HTTP app."""
    return secrets.token_urlsafe(32)


def presented_token(headers: Headers) -> str | None:
    """The key of `Authorization: Bearer <key>`, else of `X-API-Key: <key>`, else None."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key", "").strip() or None


async def _unauthorized(send: Send, reason: str) -> None:
    await send_error(
        send, 401, "headers.authorization", reason, [(b"www-authenticate", b'Bearer realm="partnermatch"')]
    )


class BodyLimits:
    """Request bodies on `paths` must be JSON (415) and at most `max_bytes` long (413). The body is
    read here, before the app, so an oversized one is refused without being held whole."""

    def __init__(self, app: ASGIApp, paths: frozenset[str], max_bytes: int) -> None:
        self.app = app
        self.paths = paths
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        declared = headers.get("content-length", "")
        too_large = f"the body is larger than {self.max_bytes:,} bytes"
        if declared.isdigit() and int(declared) > self.max_bytes:
            await send_error(send, 413, "body", too_large)
            return
        if media_type and media_type != "application/json":
            await _unsupported(send, media_type)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_error(send, 413, "body", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and not media_type:
            await _unsupported(send, "none")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _unsupported(send: Send, media_type: str) -> None:
    await send_error(send, 415, "headers.content-type", f"the body must be application/json, not {media_type}")
