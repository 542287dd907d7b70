"""tickets.purged_at: the retention purge (safety.retention_days)

A closed ticket older than the retention period loses the citizen's text and name once
(`purged_at`); reopening it clears the mark, so it is purged again after it closes. The
index serves the daily purge (closed, not purged, closed longest ago first) without
reading the tickets purged already, however many there are.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("purged_at", sa.DateTime(), nullable=True))
    op.create_index("ix_tickets_retention", "tickets", ["state", "purged_at", "closed_at"])


def downgrade() -> None:
    op.drop_index("ix_tickets_retention", table_name="tickets")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("purged_at")
