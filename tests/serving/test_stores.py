"""The service's database (serving.stores): migrations adopt files of the old code with their rows,
the migrated schema is the declared one, engine settings per dialect, API keys on PostgreSQL, and
decisions acknowledged before a kill -9 are all stored."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from models.registry import Paths
from serving.decision_log import DecisionLog
from serving.keys import KeyStore, Scope, new_token, secret_digest
from serving.service import prepare_database
from serving.stores import METADATA, migration_config, open_engine, schema_revision, sqlite_url
from tests.serving.store_writer import acknowledged_before_kill

HEAD = ScriptDirectory.from_config(migration_config()).get_current_head()
ROOT = Path(__file__).resolve().parents[2]

# What the code before the migrations created: the decision log (serving/decision_log.py) and the
# key store (serving/keys.py, SQLAlchemy's create_all), each in a file of its own.
OLD_DECISION_LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id   TEXT PRIMARY KEY,
    logged_at     TEXT NOT NULL,
    model_name    TEXT NOT NULL,
    model_version TEXT NOT NULL,
    request_json  TEXT NOT NULL,
    response_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS retries (
    owner       TEXT NOT NULL,
    retry_key   TEXT NOT NULL,
    decision_id TEXT NOT NULL REFERENCES decisions (decision_id),
    claimed_at  TEXT NOT NULL,
    PRIMARY KEY (owner, retry_key)
);
"""
OLD_KEY_STORE_SCHEMA = """
CREATE TABLE api_keys (
    key_id VARCHAR(16) NOT NULL,
    name VARCHAR(200) NOT NULL,
    secret_sha256 VARCHAR(64) NOT NULL,
    scopes TEXT NOT NULL,
    rate_per_second FLOAT NOT NULL,
    burst INTEGER NOT NULL,
    created_at VARCHAR(32) NOT NULL,
    revoked_at VARCHAR(32),
    PRIMARY KEY (key_id)
);
"""


def _old_files(mlruns: Path) -> str:
    """The old code's two files under `mlruns`, with a decision, its retry claim and a key; the key's token."""
    mlruns.mkdir(parents=True)
    with sqlite3.connect(mlruns / "decisions.sqlite") as log:
        log.executescript(OLD_DECISION_LOG_SCHEMA)
        log.execute(
            "INSERT INTO decisions VALUES ('d-old', '2026-01-02T03:04:05+00:00', 'partnermatch-win', '3', '{}', '{}')"
        )
        log.execute("INSERT INTO retries VALUES ('k1', 'header:abc', 'd-old', '2026-01-02T03:04:05.000000+00:00')")
    key_id, secret, token = new_token()
    with sqlite3.connect(mlruns / "api-keys.sqlite") as keys:
        keys.executescript(OLD_KEY_STORE_SCHEMA)
        keys.execute(
            "INSERT INTO api_keys VALUES (?, 'crm', ?, 'route', 50.0, 100, '2026-01-01T00:00:00+00:00', NULL)",
            (key_id, secret_digest(secret)),
        )
    return token


def test_the_old_sqlite_files_are_migrated_with_their_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PARTNERMATCH_DATABASE_URL", "PARTNERMATCH_DECISION_LOG", "PARTNERMATCH_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PARTNERMATCH_MLRUNS", str(tmp_path / "mlruns"))
    token = _old_files(tmp_path / "mlruns")

    url = prepare_database(Paths.from_environment())
    assert url == sqlite_url(tmp_path / "mlruns" / "decisions.sqlite")  # the old decision log is the database
    assert schema_revision(url) == HEAD
    log = DecisionLog(url)
    old = log.get("d-old")
    assert old is not None and (old.model_name, old.model_version) == ("partnermatch-win", "3")
    keys = KeyStore(url)
    key = keys.authenticate(token)
    assert key is not None and key.scopes == {Scope.ROUTE}
    assert not (tmp_path / "mlruns" / "api-keys.sqlite").exists()
    assert (tmp_path / "mlruns" / "api-keys.sqlite.imported").exists()

    prepare_database(Paths.from_environment())  # again: nothing changes
    assert len(log) == 1 and len(keys.all_keys()) == 1
    log.close()
    keys.close()


def test_the_migrated_schema_is_the_declared_one(store_url: str) -> None:
    engine = open_engine(store_url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), METADATA) == []
    engine.dispose()
    assert schema_revision(store_url) == HEAD


def test_sqlite_is_durable_and_waits_for_locks(tmp_path: Path) -> None:
    engine = open_engine(sqlite_url(tmp_path / "nested" / "database.sqlite"))
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    engine.dispose()


@pytest.mark.integration
def test_postgresql_uses_psycopg_a_checked_pool_and_synchronous_commits(postgres_url: str) -> None:
    engine = open_engine(postgres_url)
    assert engine.dialect.driver == "psycopg"
    assert engine.pool._pre_ping  # type: ignore[attr-defined]
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    engine.dispose()


def test_other_databases_are_refused() -> None:
    with pytest.raises(ValueError, match="mysql"):
        open_engine("mysql://user@localhost/db")


def test_api_keys_work_on_both_databases(store_url: str) -> None:
    store = KeyStore(store_url)
    issued = store.create("crm", {Scope.ROUTE})
    assert store.authenticate(issued.token) == issued.key
    store.revoke(issued.key.key_id)
    assert store.authenticate(issued.token) is None
    assert [key.key_id for key in store.all_keys()] == [issued.key.key_id]
    store.close()


ACKNOWLEDGED_BEFORE_KILL = 100


def test_every_acknowledged_decision_survives_kill_9(store_url: str) -> None:
    """A writer prints each decision id once its commit returned; SIGKILL mid-stream loses none."""
    acknowledged = acknowledged_before_kill(store_url, "decisions", ACKNOWLEDGED_BEFORE_KILL)
    log = DecisionLog(store_url)
    missing = [decision_id for decision_id in acknowledged if log.get(decision_id) is None]
    assert missing == []
    assert len(log) >= len(acknowledged)
    log.close()


def test_a_retry_claim_needs_its_decision_on_both_databases(store_url: str) -> None:
    engine = open_engine(store_url)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO retries VALUES ('k', 'x', 'no-such-decision', 't')")
    engine.dispose()
