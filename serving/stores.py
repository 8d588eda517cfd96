"""The service's database: its tables, engines and schema migrations, behind one SQLAlchemy URL.

SQLite (`sqlite:///<file>`, the default: one file, no server) or PostgreSQL
(`postgresql://user:password@host:port/db`, driven by psycopg 3) when several service replicas share
the decision log, the API keys and the feedback. The tables are declared once here (SQLAlchemy Core);
the migrations in `serving/migrations/versions/` (Alembic) create and change them, and
`upgrade_database` applies them (`partnermatch db upgrade`; `partnermatch serve` and the service run it
at start-up). A store (`DecisionLog`, `KeyStore`, ...) opens an engine with `open_engine` and writes in
`write_transaction`.

Durability: SQLite in WAL mode with `synchronous=FULL` (a committed row survives a power cut), and
PostgreSQL with `synchronous_commit=on` forced per session, whatever the server's default.

To add a store: declare its table(s) on `METADATA` below, add a revision in `serving/migrations/versions/`
(`down_revision` = the current head; `test_stores.py` checks the migrated schema equals `METADATA`),
open an engine with `open_engine(url)` and write in `write_transaction`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

METADATA = sa.MetaData()

DECISIONS = sa.Table(
    "decisions",
    METADATA,
    sa.Column("decision_id", sa.Text, primary_key=True),
    sa.Column("logged_at", sa.Text, nullable=False),  # ISO 8601, UTC
    sa.Column("model_name", sa.Text, nullable=False),
    sa.Column("model_version", sa.Text, nullable=False),
    sa.Column("request_json", sa.Text, nullable=False),
    sa.Column("response_json", sa.Text, nullable=False),
    # Shadow mode (`serving.shadow`): what the shadow model answered to the same request; NULL: no shadow.
    sa.Column("shadow_model_version", sa.Text, nullable=True),
    sa.Column("shadow_response_json", sa.Text, nullable=True),
)
# A retry claim: (owner, retry_key) is unique, so of two concurrent claims one commits.
RETRIES = sa.Table(
    "retries",
    METADATA,
    sa.Column("owner", sa.Text, primary_key=True),  # the API key id
    sa.Column("retry_key", sa.Text, primary_key=True),
    sa.Column("decision_id", sa.Text, sa.ForeignKey("decisions.decision_id"), nullable=False),
    sa.Column("claimed_at", sa.Text, nullable=False),  # fixed-width ISO 8601, UTC: text order is time order
)
API_KEYS = sa.Table(
    "api_keys",
    METADATA,
    sa.Column("key_id", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("secret_sha256", sa.String(64), nullable=False),
    sa.Column("scopes", sa.Text, nullable=False),  # comma-separated Scope values
    sa.Column("rate_per_second", sa.Float, nullable=False),
    sa.Column("burst", sa.Integer, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),  # ISO 8601, UTC
    sa.Column("revoked_at", sa.String(32), nullable=True),
)

SQLITE_BUSY_SECONDS = 30.0  # wait out another process's short write lock instead of failing at once
# What a store raises when its database stays locked past the busy timeout or cannot be reached
# (SQLAlchemy's errors, and sqlite3's for the feedback store): the service answers 503 with
# Retry-After, never 500.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (sa.exc.SQLAlchemyError, sqlite3.Error)
# Per process: a service worker handles one request at a time; the pool covers the CLI and threads.
POSTGRES_POOL_SIZE = 5
POSTGRES_MAX_OVERFLOW = 5
POSTGRES_POOL_RECYCLE_SECONDS = 1800  # below common proxy and firewall idle timeouts
# Migrations of concurrent starters (service workers, replicas) run one at a time.
_MIGRATION_LOCK_ID = 0x504D4442  # "PMDB", a pg_advisory_xact_lock key
_WRITE = "partnermatch_write"  # execution option: this transaction writes


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file (its directory is created)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(path).resolve()}"


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL, None for another database (or an in-memory SQLite)."""
    parsed = make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


def open_engine(url: str) -> sa.Engine:
    """An engine for `url` with the settings its database needs (see the module docstring).

    `postgresql://` URLs use psycopg 3 (`postgresql+psycopg://`). Raises ValueError for a database
    other than SQLite and PostgreSQL (the migrations and the claim's upsert are written for those two).
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        return sa.create_engine(
            parsed.set(drivername="postgresql+psycopg"),
            pool_size=POSTGRES_POOL_SIZE,
            max_overflow=POSTGRES_MAX_OVERFLOW,
            pool_pre_ping=True,  # a replica survives a database restart: stale connections are replaced
            pool_recycle=POSTGRES_POOL_RECYCLE_SECONDS,
            connect_args={"options": "-c synchronous_commit=on"},
        )
    raise ValueError(f"unsupported database {backend!r} in {parsed.render_as_string(hide_password=True)}")


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    if url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})

    @sa.event.listens_for(engine, "connect")
    def _configure(connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's "begin" below emit BEGIN, instead of sqlite3 deferring it to the first write.
        connection.isolation_level = None
        connection.execute("PRAGMA journal_mode=WAL")
        # FULL: a decision acknowledged to the caller survives a power cut, not just a crash.
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")  # as PostgreSQL: a retry claim needs its decision

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        # IMMEDIATE takes the write lock at BEGIN: what a writing transaction reads stays true until it
        # commits, and it never fails upgrading a read lock (WAL's SQLITE_BUSY_SNAPSHOT).
        immediate = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


@contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that writes, committed on leaving (rolled back on an exception). On SQLite it
    holds the database's write lock from the start; on PostgreSQL it is READ COMMITTED, so concurrent
    writers must rely on unique constraints (see `DecisionLog.append`)."""
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE: True})
        with connection.begin():
            yield connection


def upgrade_database(url: str) -> None:
    """Apply every migration the database at `url` lacks (Alembic `upgrade head`); idempotent.

    Concurrent callers (workers and replicas starting together) migrate one at a time: the whole
    upgrade is one transaction that holds SQLite's write lock or a PostgreSQL advisory lock. A
    database made before the migrations existed is adopted (revision 0001 creates only missing tables).
    """
    engine = open_engine(url)
    try:
        with write_transaction(engine) as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK_ID)))
            config = migration_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def migration_config() -> Config:
    """Alembic's configuration for the migrations in `serving/migrations` (no alembic.ini needed)."""
    config = Config()
    config.set_main_option("script_location", "serving:migrations")
    return config


def schema_revision(url: str) -> str | None:
    """The migration the database at `url` is at (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    engine = open_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def import_legacy_keys(url: str, legacy_file: Path) -> int:
    """Copy the API keys of a key store file of the pre-database layout (`api-keys.sqlite`) into the
    database at `url`, then rename the file to `<name>.imported`; returns how many keys were new.
    Keys already in the database are kept as they are. Nothing happens when the file does not exist
    or is the database itself."""
    database_file = sqlite_path(url)
    if not legacy_file.exists() or (database_file is not None and database_file.resolve() == legacy_file.resolve()):
        return 0
    legacy = open_engine(sqlite_url(legacy_file))
    try:
        with legacy.connect() as connection:
            rows = [dict(row) for row in connection.execute(sa.select(API_KEYS)).mappings()]
    finally:
        legacy.dispose()
    engine = open_engine(url)
    try:
        with write_transaction(engine) as connection:
            present = set(connection.execute(sa.select(API_KEYS.c.key_id)).scalars())
            new = [row for row in rows if row["key_id"] not in present]
            if new:
                connection.execute(API_KEYS.insert(), new)
    finally:
        engine.dispose()
    legacy_file.rename(legacy_file.with_name(legacy_file.name + ".imported"))
    return len(new)
