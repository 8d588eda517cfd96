"""Feedback events in the service's database (before: a SQLite file of their own, `feedback.sqlite`,
whose events `serving.stores.import_legacy_feedback` copies in with their sequence numbers).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "feedback_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Text, nullable=False, unique=True),
        sa.Column("body_digest", sa.Text, nullable=False),
        sa.Column("received_at", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("occurred_at", sa.Text, nullable=False),
        sa.Column("partner_ids", sa.Text, nullable=False),
        sa.Column("engagement_kind", sa.Text, nullable=True),
        sa.Column("decision_id", sa.Text, nullable=True),
        sa.Column("deal_id", sa.Text, nullable=True),
        sa.Column("won", sa.Boolean, nullable=True),
        sa.Column("amount", sa.Float, nullable=True),
        sa.Column("deal_created_at", sa.Text, nullable=True),
        sa.Column("deal_region", sa.Text, nullable=True),
        sa.Column("deal_products", sa.Text, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_feedback_events_decision_id", "feedback_events", ["decision_id"])


def downgrade() -> None:
    op.drop_index("ix_feedback_events_decision_id", table_name="feedback_events")
    op.drop_table("feedback_events")
