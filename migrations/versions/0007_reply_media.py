"""reply_parts.media: the images an agent attached to a reply, on its first part

They go out attached to that tweet (X's media upload); the bytes are fetched from
the chat platform only then, so nothing but the file's id and kind is stored.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 19:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reply_parts") as batch:
        batch.add_column(sa.Column("media", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reply_parts") as batch:
        batch.drop_column("media")
