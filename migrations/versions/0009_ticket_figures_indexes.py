"""tickets: indexes for the figures (hand-offs, stats, digests, /metrics) by department

A desk keeps a million tickets: every figure reads one department and a window of
days through one of these, never the whole history (issue 11).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 17:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_tickets_department_state_created": ["department", "state", "created_at"],
    "ix_tickets_department_created": ["department", "created_at"],
    "ix_tickets_department_first_response": ["department", "first_response_at"],
    "ix_tickets_department_closed": ["department", "closed_at"],
}


def upgrade() -> None:
    for name, columns in INDEXES.items():
        op.create_index(name, "tickets", columns)


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="tickets")
