"""saved_answers, replies.origin: answers kept under a name, and one reply per origin

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "saved_answers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("saved_by", sa.String(length=255), nullable=False),
        sa.Column("saved_at", sa.DateTime(), nullable=False),
        sa.Column("ticket", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["ticket"], ["tickets.number"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("department", "name", name="uq_saved_answers_name"),
    )
    with op.batch_alter_table("replies") as batch:
        batch.add_column(sa.Column("origin", sa.String(length=96), nullable=True))
        batch.create_unique_constraint("uq_replies_ticket_origin", ["ticket", "origin"])


def downgrade() -> None:
    with op.batch_alter_table("replies") as batch:
        batch.drop_constraint("uq_replies_ticket_origin", type_="unique")
        batch.drop_column("origin")
    op.drop_table("saved_answers")
