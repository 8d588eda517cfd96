"""Shadow mode: each decision can carry the shadow model's version and answer.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("decisions", sa.Column("shadow_model_version", sa.Text, nullable=True))
    op.add_column("decisions", sa.Column("shadow_response_json", sa.Text, nullable=True))


def downgrade() -> None:
    # batch: SQLite drops a column by copying the table.
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("shadow_response_json")
        batch.drop_column("shadow_model_version")
