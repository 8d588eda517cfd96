"""The decision log: every routing decision, durable in the service's database (`serving.stores`).

One row per decision: its id, when it was logged, the model name and version that answered, and
the request and response as JSON text. A decision may carry a retry claim (who asked, under which
idempotency key): it is written in the same transaction, so of two concurrent retries only one logs
a decision and the other gets that one back, whether they run in one process, in several workers
sharing a SQLite file, or in several replicas sharing a PostgreSQL database.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from serving.stores import DECISIONS, RETRIES, open_engine, write_transaction


@dataclass(frozen=True)
class LoggedDecision:
    decision_id: str
    logged_at: datetime  # UTC
    model_name: str
    model_version: str
    request_json: str
    response_json: str


@dataclass(frozen=True)
class RetryClaim:
    """`owner` (an API key id) claims `key` for a decision; claims made before `since` have expired."""

    owner: str
    key: str
    since: datetime  # UTC


class DecisionLog:
    """Append and look up decisions in the database at `url` (migrated: `serving.stores.upgrade_database`)."""

    def __init__(self, url: str) -> None:
        self._engine = open_engine(url)

    def append(
        self,
        decision_id: str,
        model_name: str,
        model_version: str,
        request_json: str,
        response_json: str,
        retry: RetryClaim | None = None,
    ) -> LoggedDecision:
        """Store one decision (committed when this returns) and return it. With `retry`, when a live
        claim on the same (owner, key) exists, nothing is written and the claimed decision is returned
        instead (its `decision_id` differs). A repeated `decision_id` raises ValueError."""
        logged = LoggedDecision(decision_id, datetime.now(UTC), model_name, model_version, request_json, response_json)
        # One transaction, no read on the common path: insert, then claim; a claim that is taken
        # undoes the insert (a retry is rare, a new decision is not).
        with write_transaction(self._engine) as connection:
            _insert(connection, logged)
            if retry is None or _claim(connection, retry, logged):
                return logged
            # A live claim exists (made earlier, or by a concurrent writer: PostgreSQL's upsert waited
            # for it to commit): undo our decision; the claimed one, committed, is the answer.
            connection.rollback()
        winner = self.find_retry(retry)
        if winner is None:
            raise RuntimeError(f"the claim on {retry.key!r} was taken and then lost; retry the request")
        return winner

    def find_retry(self, retry: RetryClaim) -> LoggedDecision | None:
        """The decision of a live claim on (owner, key), or None."""
        with self._engine.connect() as connection:
            return _claimed(connection, retry)

    def get(self, decision_id: str) -> LoggedDecision | None:
        """The decision with this id, or None."""
        with self._engine.connect() as connection:
            row = connection.execute(sa.select(DECISIONS).where(DECISIONS.c.decision_id == decision_id)).first()
        return None if row is None else _logged(row)

    def attach_shadow(self, decision_id: str, shadow_model_version: str, shadow_response_json: str) -> None:
        """Store the shadow model's answer beside a logged decision (committed when this returns)."""
        with write_transaction(self._engine) as connection:
            connection.execute(
                DECISIONS.update()
                .where(DECISIONS.c.decision_id == decision_id)
                .values(shadow_model_version=shadow_model_version, shadow_response_json=shadow_response_json)
            )

    def shadowed(self) -> list[tuple[str, str, str]]:
        """(champion response JSON, shadow model version, shadow response JSON) of every decision with
        a shadow answer, in log order."""
        query = (
            sa.select(DECISIONS.c.response_json, DECISIONS.c.shadow_model_version, DECISIONS.c.shadow_response_json)
            .where(DECISIONS.c.shadow_response_json.is_not(None))
            .order_by(DECISIONS.c.logged_at)
        )
        with self._engine.connect() as connection:
            return [(row[0], row[1], row[2]) for row in connection.execute(query)]

    def __len__(self) -> int:
        with self._engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(DECISIONS)).scalar_one())

    def recent(self, limit: int) -> list[LoggedDecision]:
        """The latest `limit` decisions (limit >= 1), newest first."""
        query = sa.select(DECISIONS).order_by(DECISIONS.c.logged_at.desc()).limit(limit)
        with self._engine.connect() as connection:
            return [_logged(row) for row in connection.execute(query)]

    def close(self) -> None:
        """Close the connections; the object is unusable afterwards."""
        self._engine.dispose()


# Built once: SQLAlchemy then compiles each statement once per engine (its compiled cache) instead of
# building and hashing a new statement per decision.
_INSERT_DECISION = DECISIONS.insert()


def _insert(connection: sa.Connection, logged: LoggedDecision) -> None:
    try:
        connection.execute(
            _INSERT_DECISION,
            {
                "decision_id": logged.decision_id,
                "logged_at": logged.logged_at.isoformat(),
                "model_name": logged.model_name,
                "model_version": logged.model_version,
                "request_json": logged.request_json,
                "response_json": logged.response_json,
            },
        )
    except sa.exc.IntegrityError as error:
        raise ValueError(f"decision {logged.decision_id!r} is already logged") from error


def _claim(connection: sa.Connection, retry: RetryClaim, logged: LoggedDecision) -> bool:
    """Claim (owner, key) for `logged`, replacing an expired claim; False when a live claim exists
    (the row is left alone). One statement: PostgreSQL waits for a concurrent uncommitted claim of
    the same key, then judges the committed row, so two transactions never both succeed."""
    parameters = {
        "owner": retry.owner,
        "retry_key": retry.key,
        "decision_id": logged.decision_id,
        "claimed_at": _timestamp(logged.logged_at),
        "since": _timestamp(retry.since),
    }
    return connection.execute(_claim_statement(connection.dialect.name), parameters).first() is not None


@functools.cache
def _claim_statement(dialect_name: str) -> sa.Insert:
    """The claim's upsert for a dialect (`postgresql` or `sqlite`), with bound parameters owner,
    retry_key, decision_id, claimed_at and since."""
    dialect: Any = postgresql if dialect_name == "postgresql" else sqlite
    decision_id: sa.BindParameter[str] = sa.bindparam("decision_id")
    claimed_at: sa.BindParameter[str] = sa.bindparam("claimed_at")
    return cast(
        sa.Insert,
        dialect.insert(RETRIES)
        .values(
            owner=sa.bindparam("owner"),
            retry_key=sa.bindparam("retry_key"),
            decision_id=decision_id,
            claimed_at=claimed_at,
        )
        .on_conflict_do_update(
            index_elements=[RETRIES.c.owner, RETRIES.c.retry_key],
            set_={"decision_id": decision_id, "claimed_at": claimed_at},
            where=RETRIES.c.claimed_at < sa.bindparam("since"),
        )
        .returning(RETRIES.c.decision_id),
    )


def _claimed(connection: sa.Connection, retry: RetryClaim) -> LoggedDecision | None:
    row = connection.execute(
        sa.select(DECISIONS)
        .join(RETRIES, RETRIES.c.decision_id == DECISIONS.c.decision_id)
        .where(
            RETRIES.c.owner == retry.owner,
            RETRIES.c.retry_key == retry.key,
            RETRIES.c.claimed_at >= _timestamp(retry.since),
        )
    ).first()
    return None if row is None else _logged(row)


def _logged(row: sa.Row[Any]) -> LoggedDecision:
    return LoggedDecision(
        row.decision_id,
        datetime.fromisoformat(row.logged_at),
        row.model_name,
        row.model_version,
        row.request_json,
        row.response_json,
    )


def _timestamp(moment: datetime) -> str:
    """Fixed-width UTC ISO 8601, so that text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
