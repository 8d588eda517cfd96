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
# Feedback (`serving.feedback_store`): one row per accepted CRM event, numbered by `seq` in commit
# order (writers take `lock_for_writers`), which live features and `partnermatch retrain` read after.
FEEDBACK_EVENTS = sa.Table(
    "feedback_events",
    METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),  # > 0, never reused
    sa.Column("event_id", sa.Text, nullable=False, unique=True),  # the CRM's id: one row per event
    sa.Column("body_digest", sa.Text, nullable=False),
    sa.Column("received_at", sa.Text, nullable=False),  # fixed-width ISO 8601, UTC (as every time below)
    sa.Column("kind", sa.Text, nullable=False),  # "outcome" or "engagement"
    sa.Column("occurred_at", sa.Text, nullable=False),
    sa.Column("partner_ids", sa.Text, nullable=False),  # "|"-separated
    sa.Column("engagement_kind", sa.Text, nullable=True),
    sa.Column("decision_id", sa.Text, nullable=True, index=True),
    sa.Column("deal_id", sa.Text, nullable=True),
    sa.Column("won", sa.Boolean, nullable=True),
    sa.Column("amount", sa.Float, nullable=True),
    sa.Column("deal_created_at", sa.Text, nullable=True),
    sa.Column("deal_region", sa.Text, nullable=True),
    sa.Column("deal_products", sa.Text, nullable=True),  # "|"-separated
    sqlite_autoincrement=True,  # a number is never given twice, even after the latest row is deleted
)

SQLITE_BUSY_SECONDS = 30.0  # wait out another process's short write lock instead of failing at once
# What a store raises when its database stays locked past the busy timeout or cannot be reached
# (every store is on SQLAlchemy): the service answers 503 with Retry-After, never 500.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (sa.exc.SQLAlchemyError,)
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


def lock_for_writers(connection: sa.Connection, table: sa.Table) -> None:
    """Make the writers of `table` take turns until this transaction ends (readers are not blocked).
    SQLite: `write_transaction` already holds the database's write lock. PostgreSQL: a table lock
    that conflicts only with itself; it is released after the commit is visible, so rows numbered
    by a sequence become visible in number order (a reader never sees n+1 without n)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"LOCK TABLE {table.name} IN SHARE ROW EXCLUSIVE MODE")


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
    database at `url` (see `import_legacy_rows`); how many keys were new."""
    return import_legacy_rows(url, legacy_file, API_KEYS, sa.select(API_KEYS), API_KEYS.c.key_id)


# The feedback file of the pre-database layout (`feedback.sqlite`): table `feedback`, the same columns.
_LEGACY_FEEDBACK = sa.table("feedback", *(sa.column(column.name, column.type) for column in FEEDBACK_EVENTS.columns))


def import_legacy_feedback(url: str, legacy_file: Path) -> int:
    """Copy the events of a feedback file of the pre-database layout into the database at `url`
    with their sequence numbers (a champion's `feedback_sequence` tag counts in them); see
    `import_legacy_rows`. How many events were new."""
    return import_legacy_rows(
        url, legacy_file, FEEDBACK_EVENTS, sa.select(_LEGACY_FEEDBACK), FEEDBACK_EVENTS.c.event_id
    )


def import_legacy_rows(
    url: str, legacy_file: Path, table: sa.Table, legacy_rows: sa.Select[Any], key: sa.Column[Any]
) -> int:
    """Copy the rows `legacy_rows` reads from the SQLite file `legacy_file` into `table` of the
    database at `url`, then rename the file to `<name>.imported`; returns how many rows were new.
    Rows whose `key` (a unique column of `table`) is already in the database are kept as they are; a
    new row that clashes with another (its primary key) raises ValueError naming the file, which is
    left in place.
    Nothing happens when the file does not exist or is the database itself.

    Concurrent importers (the workers of one service starting together) take turns on the database's
    write lock, and the file is renamed before the commit (and renamed back when it fails): the
    next one finds no file."""
    database_file = sqlite_path(url)
    if database_file is not None and database_file.resolve() == legacy_file.resolve():
        return 0
    imported = legacy_file.with_name(legacy_file.name + ".imported")
    engine = open_engine(url)
    renamed = False
    try:
        with write_transaction(engine) as connection:
            lock_for_writers(connection, table)
            if not legacy_file.exists():
                return 0
            rows = _read_sqlite_rows(legacy_file, legacy_rows)
            present = set(connection.execute(sa.select(key)).scalars())
            new = [row for row in rows if row[key.name] not in present]
            if new:
                try:
                    connection.execute(table.insert(), new)
                except sa.exc.IntegrityError as error:
                    raise ValueError(
                        f"{legacy_file}: its rows clash with rows of the database: {error.orig}"
                    ) from error
                _continue_numbering(connection, table)
            legacy_file.rename(imported)
            renamed = True
    except BaseException:
        if renamed:
            imported.rename(legacy_file)
        raise
    finally:
        engine.dispose()
    return len(new)


def _read_sqlite_rows(path: Path, query: sa.Select[Any]) -> list[dict[str, Any]]:
    legacy = open_engine(sqlite_url(path))
    try:
        with legacy.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings()]
    finally:
        legacy.dispose()  # the last connection checkpoints the file's WAL into it before the rename


def _continue_numbering(connection: sa.Connection, table: sa.Table) -> None:
    """After rows were inserted with their own numbers: PostgreSQL's sequence of `table`'s
    autoincrement column continues after the largest (SQLite's AUTOINCREMENT does so by itself)."""
    column = table.autoincrement_column
    if column is None or connection.dialect.name != "postgresql":
        return
    connection.execute(
        sa.select(
            sa.func.setval(
                sa.func.pg_get_serial_sequence(table.name, column.name),
                sa.select(sa.func.max(column)).scalar_subquery(),
            )
        )
    )
