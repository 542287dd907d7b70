"""outbox.is_root: the handler says which post is a ticket's thread root

Until now the store recognised a root by its key; the rows already queued are
marked the same way, once, here.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 16:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(
            sa.Column("is_root", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    outbox = sa.table("outbox", sa.column("key", sa.String), sa.column("is_root", sa.Boolean))
    op.execute(outbox.update().where(outbox.c.key.like("root:%")).values(is_root=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("is_root")
