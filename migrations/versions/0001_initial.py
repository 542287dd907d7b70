"""tickets, tweets, outbox, replies, state and audit

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-29 18:32:03.831515
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "kv",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "seen_events",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "event_id"),
    )
    with op.batch_alter_table("seen_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_seen_events_seen_at"), ["seen_at"], unique=False)

    op.create_table(
        "tickets",
        sa.Column("number", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tweet_id", sa.String(length=32), nullable=False),
        sa.Column("conversation_id", sa.String(length=32), nullable=True),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("author_id", sa.String(length=32), nullable=False),
        sa.Column("author_username", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("platform", sa.String(length=8), nullable=False),
        sa.Column("channel", sa.String(length=255), nullable=False),
        sa.Column("root", sa.String(length=255), nullable=True),
        sa.Column("assignee", sa.String(length=255), nullable=True),
        sa.Column("oncall", sa.String(length=255), nullable=True),
        sa.Column("reply_to", sa.String(length=32), nullable=False),
        sa.Column("first_response_at", sa.DateTime(), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("escalated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("number"),
        sa.UniqueConstraint("tweet_id"),
    )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tickets_conversation_id"), ["conversation_id"], unique=False
        )
        batch_op.create_index("ix_tickets_state_created", ["state", "created_at"], unique=False)
        batch_op.create_index("ix_tickets_thread", ["platform", "channel", "root"], unique=False)

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket"],
            ["tickets.number"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_ticket"), ["ticket"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("ticket", sa.Integer(), nullable=True),
        sa.Column("platform", sa.String(length=8), nullable=False),
        sa.Column("channel", sa.String(length=255), nullable=False),
        sa.Column("in_thread", sa.Boolean(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("tweet_id", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(length=32), nullable=True),
        sa.Column("not_before", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket"],
            ["tickets.number"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_claimed_by"), ["claimed_by"], unique=False)
        batch_op.create_index("ix_outbox_state", ["state", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_ticket"), ["ticket"], unique=False)

    op.create_table(
        "replies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticket", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=8), nullable=False),
        sa.Column("channel", sa.String(length=255), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("author", sa.String(length=255), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("in_reply_to", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("confirmed_by", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket"],
            ["tickets.number"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("platform", "channel", "message_id"),
    )
    with op.batch_alter_table("replies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_replies_ticket"), ["ticket"], unique=False)

    op.create_table(
        "ticket_tweets",
        sa.Column("tweet_id", sa.String(length=32), nullable=False),
        sa.Column("ticket", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticket"],
            ["tickets.number"],
        ),
        sa.PrimaryKeyConstraint("tweet_id"),
    )
    with op.batch_alter_table("ticket_tweets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_tweets_ticket"), ["ticket"], unique=False)

    op.create_table(
        "reply_parts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reply", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("tweet_id", sa.String(length=32), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(length=32), nullable=True),
        sa.Column("not_before", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reply"],
            ["replies.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("reply", "idx"),
        sa.UniqueConstraint("tweet_id"),
    )
    with op.batch_alter_table("reply_parts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reply_parts_reply"), ["reply"], unique=False)
        batch_op.create_index("ix_reply_parts_state", ["state", "id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("reply_parts", schema=None) as batch_op:
        batch_op.drop_index("ix_reply_parts_state")
        batch_op.drop_index(batch_op.f("ix_reply_parts_reply"))

    op.drop_table("reply_parts")
    with op.batch_alter_table("ticket_tweets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_tweets_ticket"))

    op.drop_table("ticket_tweets")
    with op.batch_alter_table("replies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_replies_ticket"))

    op.drop_table("replies")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_ticket"))
        batch_op.drop_index("ix_outbox_state")
        batch_op.drop_index(batch_op.f("ix_outbox_claimed_by"))

    op.drop_table("outbox")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_ticket"))

    op.drop_table("audit_log")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_thread")
        batch_op.drop_index("ix_tickets_state_created")
        batch_op.drop_index(batch_op.f("ix_tickets_conversation_id"))

    op.drop_table("tickets")
    with op.batch_alter_table("seen_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_seen_events_seen_at"))

    op.drop_table("seen_events")
    op.drop_table("leases")
    op.drop_table("kv")
