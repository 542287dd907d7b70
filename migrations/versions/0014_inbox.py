"""inbox: incoming events stored before they are acknowledged, handled from here

A Slack event is acknowledged only once stored, and Matrix's sync token is saved in
the same commit as the events it covers; each is then handled from this table, so a
crash or a database hiccup after the acknowledgement loses nothing. Unique by the
platform's own event id (a redelivery is known).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(32), nullable=True),
        sa.Column("not_before", sa.DateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.UniqueConstraint("source", "event_id"),
    )
    op.create_index("ix_inbox_due", "inbox", ["state", "source", "id"])
    op.create_index("ix_inbox_received_at", "inbox", ["received_at"])


def downgrade() -> None:
    op.drop_table("inbox")
