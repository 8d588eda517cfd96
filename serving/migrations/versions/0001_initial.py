"""The schema before migrations: decisions and their retry claims, API keys.

Revision ID: 0001
Revises: -
Create Date: 2026-07-01

Databases made by the code before Alembic (the decision log `decisions.sqlite`, or a key store
file) already hold some of these tables: each is created only when missing, so such a file is
adopted with its rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "decisions" not in existing:
        op.create_table(
            "decisions",
            sa.Column("decision_id", sa.Text, primary_key=True),
            sa.Column("logged_at", sa.Text, nullable=False),
            sa.Column("model_name", sa.Text, nullable=False),
            sa.Column("model_version", sa.Text, nullable=False),
            sa.Column("request_json", sa.Text, nullable=False),
            sa.Column("response_json", sa.Text, nullable=False),
        )
    if "retries" not in existing:
        op.create_table(
            "retries",
            sa.Column("owner", sa.Text, primary_key=True),
            sa.Column("retry_key", sa.Text, primary_key=True),
            sa.Column("decision_id", sa.Text, sa.ForeignKey("decisions.decision_id"), nullable=False),
            sa.Column("claimed_at", sa.Text, nullable=False),
        )
    if "api_keys" not in existing:
        op.create_table(
            "api_keys",
            sa.Column("key_id", sa.String(16), primary_key=True),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("secret_sha256", sa.String(64), nullable=False),
            sa.Column("scopes", sa.Text, nullable=False),
            sa.Column("rate_per_second", sa.Float, nullable=False),
            sa.Column("burst", sa.Integer, nullable=False),
            sa.Column("created_at", sa.String(32), nullable=False),
            sa.Column("revoked_at", sa.String(32), nullable=True),
        )


def downgrade() -> None:
    op.drop_table("retries")
    op.drop_table("decisions")
    op.drop_table("api_keys")
