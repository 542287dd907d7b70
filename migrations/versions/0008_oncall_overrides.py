"""oncall_overrides: `oncall set` / `oncall clear` (issue 11)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "oncall_overrides",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("member", sa.String(length=255), nullable=False),
        sa.Column("starts", sa.DateTime(), nullable=False),
        sa.Column("ends", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("cleared_by", sa.String(length=255), nullable=True),
        sa.Column("cleared_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_oncall_overrides_department_ends", "oncall_overrides", ["department", "ends"]
    )


def downgrade() -> None:
    op.drop_index("ix_oncall_overrides_department_ends", table_name="oncall_overrides")
    op.drop_table("oncall_overrides")
