"""retractions, reply_parts.deleted_at: `retract` takes a public reply back from X

One row per retracted reply (unique), so the command repeated, a crash or a second
instance never retracts twice; each part records when X deleted it. The state index
serves the delivery loop's look for pending retractions without scanning the rest.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reply_parts") as batch:
        batch.add_column(sa.Column("deleted_at", sa.DateTime(), nullable=True))
    op.create_table(
        "retractions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reply", sa.Integer(), nullable=False),
        sa.Column("ticket", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(length=255), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("not_before", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["reply"], ["replies.id"]),
        sa.ForeignKeyConstraint(["ticket"], ["tickets.number"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reply"),
    )
    op.create_index("ix_retractions_ticket", "retractions", ["ticket"])
    op.create_index("ix_retractions_state", "retractions", ["state", "id"])


def downgrade() -> None:
    op.drop_index("ix_retractions_state", table_name="retractions")
    op.drop_index("ix_retractions_ticket", table_name="retractions")
    op.drop_table("retractions")
    with op.batch_alter_table("reply_parts") as batch:
        batch.drop_column("deleted_at")
