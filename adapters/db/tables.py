"""The schema (one Alembic chain in migrations/ follows it), the same on SQLite and
PostgreSQL.

The delivery guarantees rest on constraints here, not on Python checks: one ticket
per tweet (`ticket_tweets.tweet_id` is the primary key), one public reply per chat
message (`replies` unique on platform/channel/message, and on ticket/origin for the replies
`answer` and `reuse` make), one chat post per key (`outbox.key` unique).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.outbox import PartState, PostState


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC everywhere, handed out timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class TicketRow(Base):
    __tablename__ = "tickets"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tweet_id: Mapped[str] = mapped_column(String(32), unique=True)
    conversation_id: Mapped[str | None] = mapped_column(String(32), index=True)
    department: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="open")
    author_id: Mapped[str] = mapped_column(String(32))
    author_username: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    platform: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(255))
    root: Mapped[str | None] = mapped_column(String(255))
    assignee: Mapped[str | None] = mapped_column(String(255))
    oncall: Mapped[str | None] = mapped_column(String(255))
    reply_to: Mapped[str] = mapped_column(String(32))
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # `move`: how often it was re-routed. `platform`/`channel` are its current department's
    # from the move on; `root` is NULL until the new thread's root lands (ticket_moves
    # keeps the threads it left).
    moves: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    escalated_again_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When `safety.retention_days` took the citizen's text and name (None: kept, or the
    # ticket was reopened since, so that it is purged again once closed long enough).
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_tickets_state_created", "state", "created_at"),
        Index("ix_tickets_thread", "platform", "channel", "root"),
        # The figures (hand-offs, stats, digests, /metrics) read one department and a
        # window of days, never the whole history.
        Index("ix_tickets_department_state_created", "department", "state", "created_at"),
        Index("ix_tickets_department_created", "department", "created_at"),
        Index("ix_tickets_department_first_response", "department", "first_response_at"),
        Index("ix_tickets_department_closed", "department", "closed_at"),
        # The retention purge: closed, not purged, closed longest ago first.
        Index("ix_tickets_retention", "state", "purged_at", "closed_at"),
    )


# `list`: urgent open tickets first, then the oldest (handlers/commands/tickets.py).
Index(
    "ix_tickets_state_urgent_created",
    TicketRow.state,
    TicketRow.urgent.desc(),
    TicketRow.created_at,
    TicketRow.number,
)
# `list [open|all] DEPT`: the same order within one department.
Index(
    "ix_tickets_department_state_urgent_created",
    TicketRow.department,
    TicketRow.state,
    TicketRow.urgent.desc(),
    TicketRow.created_at,
    TicketRow.number,
)
# The escalation scan (every 30 s): only the open tickets nobody answered or escalated
# yet are in it, so it stays small however many tickets the desk has closed.
_UNANSWERED = "state = 'open' AND first_response_at IS NULL AND escalated_at IS NULL"
Index(
    "ix_tickets_unanswered",
    TicketRow.department,
    TicketRow.created_at,
    sqlite_where=text(_UNANSWERED),
    postgresql_where=text(_UNANSWERED),
)


class TicketTweetRow(Base):
    """Every tweet known to belong to a ticket: the query, follow-ups, our replies."""

    __tablename__ = "ticket_tweets"

    tweet_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    ticket: Mapped[int] = mapped_column(ForeignKey("tickets.number"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # query | followup | reply
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxRow(Base):
    """A bot message to chat that must land exactly once."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    ticket: Mapped[int | None] = mapped_column(ForeignKey("tickets.number"), index=True)
    platform: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(255))
    in_thread: Mapped[bool] = mapped_column(Boolean)
    is_root: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    mark: Mapped[str | None] = mapped_column(String(16))  # a reaction, not a message
    # An in-thread post pinned to this root: the thread its ticket was moved away from.
    # NULL: its ticket's current thread (tickets.root, once that exists).
    thread_root: Mapped[str | None] = mapped_column(String(255))
    body: Mapped[Any] = mapped_column(JSON)
    actions: Mapped[Any] = mapped_column(JSON, default=list)
    tweet_id: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default=PostState.PENDING)  # bot.outbox
    message_id: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(32), index=True)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_outbox_state", "state", "id"),)


class ReplyRow(Base):
    """An agent's chat message that goes out as a public reply (chain)."""

    __tablename__ = "replies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket: Mapped[int] = mapped_column(ForeignKey("tickets.number"), index=True)
    platform: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str] = mapped_column(String(255))
    message_id: Mapped[str] = mapped_column(String(255))
    author: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    in_reply_to: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))  # bot.outbox.ReplyState
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmed_by: Mapped[str | None] = mapped_column(String(255))
    # A reply a command made from text written elsewhere (`answer:NAME`, `reuse:12`):
    # at most one per ticket, so a repeated command or a replay tweets nothing twice.
    # A cancelled reply gives its origin up, so the command can be given again.
    origin: Mapped[str | None] = mapped_column(String(96))

    __table_args__ = (
        UniqueConstraint("platform", "channel", "message_id"),
        UniqueConstraint("ticket", "origin", name="uq_replies_ticket_origin"),
        # Delivery looks for pending replies every second: never through the sent ones.
        Index("ix_replies_state", "state", "id"),
    )


class ReplyPartRow(Base):
    __tablename__ = "reply_parts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reply: Mapped[int] = mapped_column(ForeignKey("replies.id"), index=True)
    idx: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=PartState.PENDING)  # bot.outbox
    tweet_id: Mapped[str | None] = mapped_column(String(32), unique=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(32))
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Images an agent attached (bot.domain.ChatFile as JSON), on a reply's first part.
    media: Mapped[Any] = mapped_column(JSON, nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # retracted from X

    __table_args__ = (
        UniqueConstraint("reply", "idx"),
        Index("ix_reply_parts_state", "state", "id"),
    )


class RetractionRow(Base):
    """A public reply taken back (`retract`): its tweets deleted from X, then the thread
    told, once. One per reply (the unique constraint), so a repeated command or a second
    instance never retracts twice; deleting is idempotent (a post already gone counts)."""

    __tablename__ = "retractions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reply: Mapped[int] = mapped_column(ForeignKey("replies.id"), unique=True)
    ticket: Mapped[int] = mapped_column(ForeignKey("tickets.number"), index=True)
    requested_by: Mapped[str] = mapped_column(String(255))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(16))  # bot.outbox.RetractState
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_retractions_state", "state", "id"),)


class KeyValueRow(Base):
    __tablename__ = "kv"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class LeaseRow(Base):
    """Work only one instance should do at a time (polling X), held for a while."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SeenEventRow(Base):
    __tablename__ = "seen_events"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class SavedAnswerRow(Base):
    """A department's answer to a common question, kept under a name (`save NAME`)."""

    __tablename__ = "saved_answers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    department: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))  # as `bot.routing.normalise` leaves it
    text: Mapped[str] = mapped_column(Text)
    saved_by: Mapped[str] = mapped_column(String(255))
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ticket: Mapped[int | None] = mapped_column(ForeignKey("tickets.number"))  # kept from

    __table_args__ = (UniqueConstraint("department", "name", name="uq_saved_answers_name"),)


class TicketMoveRow(Base):
    """`move N DEPT`: one re-routing of a ticket, and the thread it left (`from_root` is
    NULL when its root had not landed yet), so that thread still finds its ticket."""

    __tablename__ = "ticket_moves"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket: Mapped[int] = mapped_column(ForeignKey("tickets.number"))
    n: Mapped[int] = mapped_column(Integer)  # the ticket's 1st, 2nd, … move
    from_department: Mapped[str] = mapped_column(String(64))
    from_platform: Mapped[str] = mapped_column(String(8))
    from_channel: Mapped[str] = mapped_column(String(255))
    from_root: Mapped[str | None] = mapped_column(String(255))
    to_department: Mapped[str] = mapped_column(String(64))
    moved_by: Mapped[str] = mapped_column(String(255))
    moved_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("ticket", "n"),
        Index("ix_ticket_moves_from_thread", "from_platform", "from_channel", "from_root"),
    )


class OverrideRow(Base):
    """`oncall set`: someone on call instead of the rotation for a while (bot.rotation).

    Never deleted: `oncall clear` moves `ends` to the moment it was cleared, so the
    stretches it bounded stay the same for every instance (the hand-off is keyed on them).
    """

    __tablename__ = "oncall_overrides"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    department: Mapped[str] = mapped_column(String(64))
    member: Mapped[str] = mapped_column(String(255))
    starts: Mapped[datetime] = mapped_column(UTCDateTime)
    ends: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cleared_by: Mapped[str | None] = mapped_column(String(255))
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_oncall_overrides_department_ends", "department", "ends"),)


class InboxRow(Base):
    """An event a platform sent us, stored before it is acknowledged and handled from
    here: neither a crash nor a database hiccup after the ack loses it. Unique by the
    platform's own id, so a redelivery is known; kept a week once handled."""

    __tablename__ = "inbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(16))  # slack | matrix
    event_id: Mapped[str] = mapped_column(String(255))
    payload: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))  # bot.outbox.EventState
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(32))
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        Index("ix_inbox_due", "state", "source", "id"),
    )


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket: Mapped[int | None] = mapped_column(ForeignKey("tickets.number"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")
