"""Indexes for the queries that run on a timer, so their cost does not grow with history

- replies (state, id): delivery's look for pending replies every second;
- tickets (department, state, urgent DESC, created_at, number): `list [all] DEPT`;
- tickets (department, created_at) WHERE open, unanswered and not escalated: the
  escalation scan every 30 s reads only the tickets it may escalate.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNANSWERED = "state = 'open' AND first_response_at IS NULL AND escalated_at IS NULL"


def upgrade() -> None:
    op.create_index("ix_replies_state", "replies", ["state", "id"])
    op.create_index(
        "ix_tickets_department_state_urgent_created",
        "tickets",
        ["department", "state", sa.text("urgent DESC"), "created_at", "number"],
    )
    op.create_index(
        "ix_tickets_unanswered",
        "tickets",
        ["department", "created_at"],
        sqlite_where=sa.text(UNANSWERED),
        postgresql_where=sa.text(UNANSWERED),
    )


def downgrade() -> None:
    op.drop_index("ix_tickets_unanswered", table_name="tickets")
    op.drop_index("ix_tickets_department_state_urgent_created", table_name="tickets")
    op.drop_index("ix_replies_state", table_name="replies")
