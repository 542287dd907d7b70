"""tickets.urgent: triage.urgent marks a ticket, and `list` shows urgent open ones first

The index serves `list` (state = open, urgent first, then the oldest) without sorting
the open tickets, however many there are.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(
            sa.Column("urgent", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index(
        "ix_tickets_state_urgent_created",
        "tickets",
        ["state", sa.text("urgent DESC"), "created_at", "number"],
    )


def downgrade() -> None:
    op.drop_index("ix_tickets_state_urgent_created", table_name="tickets")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("urgent")
