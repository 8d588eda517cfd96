"""API keys: scopes, tokens, the key store (SQLAlchemy Core) and who may call which path.

A token reads `pm_<key id>_<secret>`: the key id (16 hex digits) finds the stored key, and the secret
(43 URL-safe characters, 256 random bits) is checked against its SHA-256 digest in constant time. Only
the digest is stored; the token is shown once, when the key is created. A revoked key stops working
within `recheck_seconds` (a store may keep what it read about a key that long, which saves a
database read per request).

Scopes (`Scope`): one name per capability; `admin` grants every scope, including ones added later.
The keys live in the service's database (`serving.stores`: one URL, SQLite or PostgreSQL) beside the
decision log.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from serving.ratelimit import RateLimit
from serving.stores import API_KEYS, open_engine, write_transaction


class Scope(StrEnum):
    """What a key may do. Add a member for each new capability (and map its paths in `AccessPolicy`)."""

    ROUTE = "route"  # POST /route
    TEAM = "team"  # POST /team
    READ_DECISIONS = "read_decisions"  # GET /decisions/{id}
    IPP = "ipp"  # POST /ipp_fit, GET /white_space: ideal-partner fit and white space for recruiters
    SENTIMENT = "sentiment"  # POST /sentiment
    HEALTH = "health"  # POST /partner_health, GET /partners/{id}/kpis
    READ_MODELS = "read_models"  # GET /models
    ADMIN = "admin"  # every scope
    FEEDBACK = "feedback"  # POST /feedback


def parse_scopes(text: str) -> frozenset[Scope]:
    """`"route,read_decisions"` -> scopes. Raises ValueError naming an unknown scope or an empty list."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"no scopes given; choose from {', '.join(scope.value for scope in Scope)}")
    unknown = [name for name in names if name not in {scope.value for scope in Scope}]
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; choose from {', '.join(s.value for s in Scope)}")
    return frozenset(Scope(name) for name in names)


TOKEN_PREFIX = "pm"
_TOKEN = re.compile(rf"^{TOKEN_PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{43}})$")


def new_token() -> tuple[str, str, str]:
    """A fresh (key id, secret, token)."""
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    return key_id, secret, f"{TOKEN_PREFIX}_{key_id}_{secret}"


def parse_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed token, else None."""
    match = _TOKEN.match(token)
    return (match.group(1), match.group(2)) if match else None


def secret_digest(secret: str) -> str:
    """SHA-256 of the secret, hex. A 256-bit random secret needs no salt or slow hash."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """A stored key (never its secret)."""

    key_id: str
    name: str
    scopes: frozenset[Scope]
    rate_limit: RateLimit
    created_at: datetime  # UTC
    revoked_at: datetime | None = None  # UTC

    def grants(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes

    def as_json(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "name": self.name,
            "scopes": sorted(scope.value for scope in self.scopes),
            "rate_per_second": self.rate_limit.per_second,
            "burst": self.rate_limit.burst,
            "created_at": self.created_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
        }


@dataclass(frozen=True)
class IssuedKey:
    """A key just created, with its token: the only time the token is known."""

    key: ApiKey
    token: str


class KeyStore:
    """Create, list, revoke and authenticate API keys in the database at `url` (migrated:
    `serving.stores.upgrade_database`). `authenticate` reads a key again once its last read is
    `recheck_seconds` old (0: on every call)."""

    def __init__(self, url: str, recheck_seconds: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = open_engine(url)
        self.recheck_seconds = recheck_seconds
        self._clock = clock
        self._read: dict[str, tuple[float, str, ApiKey]] = {}  # key id -> (read at, secret digest, key)

    def create(self, name: str, scopes: Iterable[Scope], rate_limit: RateLimit | None = None) -> IssuedKey:
        """A new key (default rate limit: `RateLimit()`); its token is in the result and nowhere else."""
        rate_limit = rate_limit or RateLimit()
        chosen = frozenset(scopes)
        if not name.strip():
            raise ValueError("a key needs a name")
        if not chosen:
            raise ValueError("a key needs at least one scope")
        key_id, secret, token = new_token()
        key = ApiKey(key_id, name.strip(), chosen, rate_limit, datetime.now(UTC))
        with write_transaction(self._engine) as connection:
            connection.execute(
                API_KEYS.insert().values(
                    key_id=key_id,
                    name=key.name,
                    secret_sha256=secret_digest(secret),
                    scopes=",".join(sorted(scope.value for scope in chosen)),
                    rate_per_second=rate_limit.per_second,
                    burst=rate_limit.burst,
                    created_at=key.created_at.isoformat(),
                )
            )
        return IssuedKey(key, token)

    def all_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(API_KEYS).order_by(API_KEYS.c.created_at)).mappings().all()
        return [_key(row) for row in rows]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (again is harmless). Raises ValueError for an unknown id."""
        with write_transaction(self._engine) as connection:
            connection.execute(
                API_KEYS.update()
                .where(API_KEYS.c.key_id == key_id, API_KEYS.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC).isoformat())
            )
            row = connection.execute(sa.select(API_KEYS).where(API_KEYS.c.key_id == key_id)).mappings().first()
        if row is None:
            raise ValueError(f"no API key {key_id!r}; `partnermatch keys list` shows them")
        return _key(row)

    def authenticate(self, token: str) -> ApiKey | None:
        """The active key this token belongs to, or None (malformed, unknown, wrong secret, revoked)."""
        parsed = parse_token(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        now = self._clock()
        read = self._read.get(key_id)
        if read is None or now - read[0] >= self.recheck_seconds:
            with self._engine.connect() as connection:
                row = connection.execute(sa.select(API_KEYS).where(API_KEYS.c.key_id == key_id)).mappings().first()
            if row is None:  # unknown ids are not kept: a caller cannot grow this map
                return None
            read = self._read[key_id] = (now, row["secret_sha256"], _key(row))
        _, digest, key = read
        if not hmac.compare_digest(digest, secret_digest(secret)):
            return None
        return key if key.revoked_at is None else None

    def close(self) -> None:
        self._engine.dispose()


def _key(row: Any) -> ApiKey:
    return ApiKey(
        key_id=row["key_id"],
        name=row["name"],
        scopes=frozenset(Scope(name) for name in row["scopes"].split(",")),
        rate_limit=RateLimit(per_second=row["rate_per_second"], burst=row["burst"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        revoked_at=None if row["revoked_at"] is None else datetime.fromisoformat(row["revoked_at"]),
    )


@dataclass(frozen=True)
class AccessPolicy:
    """Which paths need no key, and which scope the others need.

    `public_paths` match exactly, `public_prefixes` and `scoped_prefixes` match a path segment prefix
    (`/decisions` covers `/decisions` and `/decisions/x`, not `/decisionsx`). Any other path needs a
    valid key and no particular scope (and then answers 404).
    """

    public_paths: frozenset[str]
    public_prefixes: tuple[str, ...] = ()
    scoped_prefixes: tuple[tuple[str, Scope], ...] = field(default_factory=tuple)

    def is_public(self, path: str) -> bool:
        return path in self.public_paths or any(_under(path, prefix) for prefix in self.public_prefixes)

    def scope_for(self, path: str) -> Scope | None:
        """The scope a path needs, or None when any valid key will do."""
        return next((scope for prefix, scope in self.scoped_prefixes if _under(path, prefix)), None)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


@dataclass(frozen=True)
class LocalKey:
    """The local admin key of `partnermatch serve`: where its token is, and whether it is new."""

    path: Path
    created: bool


LOCAL_KEY_NAME = "local-admin"


def ensure_local_key(store: KeyStore, token_file: Path) -> LocalKey | None:
    """The local admin key for `make serve`: reuse the token in `token_file` when it still works;
    else, when the store has no active key at all, create one with every scope and write its token
    to `token_file` (mode 0600, readable only by this user). None when the store already has other
    active keys (their owner hands them out)."""
    if token_file.exists() and store.authenticate(token_file.read_text().strip()) is not None:
        return LocalKey(token_file, created=False)
    if any(key.revoked_at is None for key in store.all_keys()):
        return None
    issued = store.create(LOCAL_KEY_NAME, set(Scope))
    token_file.parent.mkdir(parents=True, exist_ok=True)
    if token_file.exists():
        token_file.unlink()  # a stale token: replace it rather than widen its mode
    descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(issued.token + "\n")
    return LocalKey(token_file, created=True)
