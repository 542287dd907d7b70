"""ticket_moves, tickets.moves, outbox.thread_root: `move N DEPT` re-routes a ticket

A ticket's thread changes only when the new root lands; posts queued for the thread it
left stay pinned to that thread (outbox.thread_root), and the thread still finds its
ticket through ticket_moves.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("moves", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("thread_root", sa.String(length=255), nullable=True))
    op.create_table(
        "ticket_moves",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket", sa.Integer(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("from_department", sa.String(length=64), nullable=False),
        sa.Column("from_platform", sa.String(length=8), nullable=False),
        sa.Column("from_channel", sa.String(length=255), nullable=False),
        sa.Column("from_root", sa.String(length=255), nullable=True),
        sa.Column("to_department", sa.String(length=64), nullable=False),
        sa.Column("moved_by", sa.String(length=255), nullable=False),
        sa.Column("moved_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["ticket"], ["tickets.number"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("ticket", "n"),
    )
    op.create_index(
        "ix_ticket_moves_from_thread",
        "ticket_moves",
        ["from_platform", "from_channel", "from_root"],
    )


def downgrade() -> None:
    op.drop_index("ix_ticket_moves_from_thread", table_name="ticket_moves")
    op.drop_table("ticket_moves")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("thread_root")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("moves")
