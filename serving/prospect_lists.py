"""Kept prospect lists: one per API key, the last batch it scored with `keep: true` (SQLAlchemy Core).

Design: `POST /ipp_fit` with `keep: true` replaces the caller's list with the batch and its fits;
`GET /white_space` names, per cell, the kept prospects that would fill it. One row per key (at most
`MAX_PROSPECTS_PER_REQUEST` prospects), so the store stays small and needs no clean-up; a key sees
only its own list. Workers share it through the database, like the API keys.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from serving.ipp_schemas import KeptList

_METADATA = sa.MetaData()
_LISTS = sa.Table(
    "prospect_lists",
    _METADATA,
    sa.Column("key_id", sa.String(16), primary_key=True),
    sa.Column("saved_at", sa.String(40), nullable=False),
    sa.Column("kept_json", sa.Text, nullable=False),  # serving.ipp_schemas.KeptList
)


def prospect_lists_beside(decision_log: Path) -> Path:
    """The default prospect-list store of a decision log: `prospect-lists.sqlite` in the same directory."""
    return decision_log.parent / "prospect-lists.sqlite"


class ProspectListStore:
    """Keep and read each API key's prospect list in the database at `url`."""

    def __init__(self, url: str) -> None:
        # SQLite waits out another process's short write lock instead of failing at once.
        self._engine = sa.create_engine(url, connect_args={"timeout": 30.0} if url.startswith("sqlite") else {})
        _METADATA.create_all(self._engine)

    def keep(self, key_id: str, kept: KeptList) -> None:
        """Replace the key's list with `kept`."""
        with self._engine.begin() as connection:
            connection.execute(_LISTS.delete().where(_LISTS.c.key_id == key_id))
            connection.execute(
                _LISTS.insert().values(
                    key_id=key_id, saved_at=kept.saved_at.isoformat(), kept_json=kept.model_dump_json()
                )
            )

    def get(self, key_id: str) -> KeptList | None:
        """The key's kept list, or None when it kept none."""
        with self._engine.connect() as connection:
            kept_json = connection.execute(sa.select(_LISTS.c.kept_json).where(_LISTS.c.key_id == key_id)).scalar()
        return None if kept_json is None else KeptList.model_validate_json(kept_json)

    def close(self) -> None:
        self._engine.dispose()
