"""The ticket store (`bot.ports.TicketStore`) on SQLAlchemy 2: the same code on SQLite
and PostgreSQL.

The delivery guarantees rest on constraints here, not on Python checks: one ticket
per tweet (`ticket_tweets.tweet_id` is the primary key), one public reply per chat
message (`replies` unique on platform/channel/message), one chat post per key
(`outbox.key` unique). Claims use compare-and-set updates so several instances
can share one PostgreSQL database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    false,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from bot.domain import (
    Action,
    Audit,
    ChannelId,
    ChatUserId,
    DepartmentId,
    MessageId,
    Outgoing,
    Platform,
    Rich,
    Ticket,
    TicketState,
    Tweet,
    TweetId,
    XUserId,
)
from bot.outbox import PartState, PostState, ReplyState
from bot.ports import (
    AuditEntry,
    Conflict,
    NewTicket,
    PendingPart,
    PendingPost,
    ReplyInfo,
)


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

    __table_args__ = (
        Index("ix_tickets_state_created", "state", "created_at"),
        Index("ix_tickets_thread", "platform", "channel", "root"),
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

    __table_args__ = (UniqueConstraint("platform", "channel", "message_id"),)


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

    __table_args__ = (
        UniqueConstraint("reply", "idx"),
        Index("ix_reply_parts_state", "state", "id"),
    )


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


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket: Mapped[int | None] = mapped_column(ForeignKey("tickets.number"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")


def _ticket(r: TicketRow) -> Ticket:
    return Ticket(
        number=r.number,
        tweet_id=TweetId(r.tweet_id),
        department=DepartmentId(r.department),
        state=TicketState(r.state),
        author_id=XUserId(r.author_id),
        author_username=r.author_username,
        text=r.text,
        created_at=r.created_at,
        platform=r.platform,  # type: ignore[arg-type]
        channel=ChannelId(r.channel),
        root=MessageId(r.root) if r.root else None,
        conversation_id=TweetId(r.conversation_id) if r.conversation_id else None,
        assignee=ChatUserId(r.assignee) if r.assignee else None,
        first_response_at=r.first_response_at,
        closed_at=r.closed_at,
        escalated_at=r.escalated_at,
        reply_to=TweetId(r.reply_to),
    )


class Tx:
    """One unit of work: everything in it commits together or not at all."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.s = session
        self.now = now

    # --- tickets and their tweets

    def tweet_known(self, tweet_id: TweetId) -> bool:
        return self.s.get(TicketTweetRow, tweet_id) is not None

    def known_tweets(self, tweet_ids: Sequence[str]) -> set[str]:
        if not tweet_ids:
            return set()
        rows = self.s.scalars(
            select(TicketTweetRow.tweet_id).where(TicketTweetRow.tweet_id.in_(tweet_ids))
        )
        return set(rows)

    def ticket(self, number: int) -> Ticket | None:
        row = self.s.get(TicketRow, number)
        return _ticket(row) if row else None

    def ticket_of_tweet(self, tweet_id: TweetId) -> Ticket | None:
        link = self.s.get(TicketTweetRow, tweet_id)
        return self.ticket(link.ticket) if link else None

    def ticket_of_conversation(self, conversation_id: TweetId) -> Ticket | None:
        row = self.s.scalars(
            select(TicketRow)
            .where(TicketRow.conversation_id == conversation_id)
            .order_by(TicketRow.number.desc())
            .limit(1)
        ).first()
        return _ticket(row) if row else None

    def ticket_of_thread(self, platform: Platform, channel: str, root: str) -> Ticket | None:
        row = self.s.scalars(
            select(TicketRow).where(
                TicketRow.platform == platform, TicketRow.channel == channel, TicketRow.root == root
            )
        ).first()
        return _ticket(row) if row else None

    def create_tickets(self, items: Sequence[NewTicket]) -> list[Ticket]:
        """Opens tickets in bulk: one INSERT for the lot, numbered in the given order."""
        rows = [
            TicketRow(
                tweet_id=n.tweet.id,
                conversation_id=n.tweet.conversation_id or n.tweet.id,
                department=n.department,
                state=TicketState.OPEN.value,
                author_id=n.tweet.author_id,
                author_username=n.tweet.author_username,
                text=n.tweet.text,
                created_at=n.tweet.created_at or self.now,
                platform=n.platform,
                channel=n.channel,
                oncall=n.oncall,
                reply_to=n.tweet.id,
            )
            for n in items
        ]
        self.s.add_all(rows)
        self.s.flush()
        for n, row in zip(items, rows, strict=True):
            self.s.add(
                TicketTweetRow(
                    tweet_id=n.tweet.id, ticket=row.number, kind="query", created_at=self.now
                )
            )
        return [_ticket(r) for r in rows]

    def add_followup(self, ticket: int, tweet: Tweet) -> None:
        self.s.add(
            TicketTweetRow(tweet_id=tweet.id, ticket=ticket, kind="followup", created_at=self.now)
        )
        self.s.execute(
            update(TicketRow).where(TicketRow.number == ticket).values(reply_to=tweet.id)
        )

    def set_state(self, ticket: int, state: TicketState) -> None:
        values: dict[str, Any] = {"state": state.value}
        values["closed_at"] = self.now if state is TicketState.CLOSED else None
        self.s.execute(update(TicketRow).where(TicketRow.number == ticket).values(**values))

    def set_assignee(self, ticket: int, assignee: ChatUserId) -> None:
        self.s.execute(
            update(TicketRow).where(TicketRow.number == ticket).values(assignee=assignee)
        )

    def set_root(self, ticket: int, root: MessageId) -> None:
        self.s.execute(update(TicketRow).where(TicketRow.number == ticket).values(root=root))

    def mark_escalated(self, ticket: int) -> bool:
        done = self.s.execute(
            update(TicketRow)
            .where(TicketRow.number == ticket, TicketRow.escalated_at.is_(None))
            .values(escalated_at=self.now)
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def tickets(
        self,
        *,
        open_only: bool = True,
        assignee: str | None = None,
        department: str | None = None,
        limit: int = 20,
    ) -> list[Ticket]:
        q = select(TicketRow)
        if open_only:
            q = q.where(TicketRow.state == TicketState.OPEN.value)
        if assignee is not None:
            q = q.where(TicketRow.assignee == assignee)
        if department is not None:
            q = q.where(TicketRow.department == department)
        q = q.order_by(
            (TicketRow.state != TicketState.OPEN.value), TicketRow.created_at, TicketRow.number
        ).limit(limit)
        return [_ticket(r) for r in self.s.scalars(q)]

    def unanswered_before(self, department: str, created_before: datetime) -> list[Ticket]:
        rows = self.s.scalars(
            select(TicketRow).where(
                TicketRow.department == department,
                TicketRow.state == TicketState.OPEN.value,
                TicketRow.first_response_at.is_(None),
                TicketRow.escalated_at.is_(None),
                TicketRow.root.is_not(None),
                TicketRow.created_at <= created_before,
            )
        )
        return [_ticket(r) for r in rows]

    # --- the audit log

    def audit(self, ticket: int | None, actor: str, action: Audit, detail: str = "") -> None:
        self.s.add(AuditRow(ticket=ticket, at=self.now, actor=actor, action=action, detail=detail))

    def audit_log(self, ticket: int) -> list[AuditEntry]:
        rows = self.s.scalars(
            select(AuditRow).where(AuditRow.ticket == ticket).order_by(AuditRow.id)
        )
        return [AuditEntry(r.at, r.actor, r.action, r.detail) for r in rows]

    # --- the chat outbox

    def enqueue(
        self, out: Outgoing, platform: Platform, in_thread: bool, *, new_key: bool = False
    ) -> bool:
        """Queues a chat post; False when one with this key exists already.

        `new_key` skips the look-up for keys that cannot exist yet (a new ticket's root);
        the unique constraint still guards them.
        """
        if not new_key and self.s.scalar(select(OutboxRow.id).where(OutboxRow.key == out.key)):
            return False
        self.s.add(
            OutboxRow(
                key=out.key,
                ticket=out.ticket,
                platform=platform,
                channel=out.channel,
                in_thread=in_thread,
                is_root=out.is_root,
                body=out.body.to_json(),
                actions=[{"id": a.id, "label": a.label, "value": a.value} for a in out.actions],
                tweet_id=out.tweet_id,
                created_at=self.now,
            )
        )
        return True

    def posted(self, key: str) -> MessageId | None:
        """Where the chat post with this key landed, once it did."""
        mid = self.s.scalar(
            select(OutboxRow.message_id).where(
                OutboxRow.key == key, OutboxRow.state == PostState.DONE
            )
        )
        return MessageId(mid) if mid else None

    # --- replies

    def add_reply(
        self,
        ticket: Ticket,
        platform: Platform,
        channel: str,
        message_id: str,
        author: ChatUserId,
        text: str,
        parts: Sequence[str],
        confirm: bool,
    ) -> int | None:
        """Records an agent's public reply; None if this chat message was seen before."""
        exists = self.s.scalar(
            select(ReplyRow.id).where(
                ReplyRow.platform == platform,
                ReplyRow.channel == channel,
                ReplyRow.message_id == message_id,
            )
        )
        if exists is not None:
            return None
        row = ReplyRow(
            ticket=ticket.number,
            platform=platform,
            channel=channel,
            message_id=message_id,
            author=author,
            text=text,
            in_reply_to=ticket.reply_to or ticket.tweet_id,
            state=ReplyState.CONFIRM if confirm else ReplyState.PENDING,
            created_at=self.now,
        )
        self.s.add(row)
        self.s.flush()
        for i, part in enumerate(parts):
            self.s.add(ReplyPartRow(reply=row.id, idx=i, text=part))
        return row.id

    def reply(self, reply_id: int) -> ReplyInfo | None:
        row = self.s.get(ReplyRow, reply_id)
        if row is None:
            return None
        ids = self.s.scalars(
            select(ReplyPartRow.tweet_id)
            .where(ReplyPartRow.reply == reply_id, ReplyPartRow.tweet_id.is_not(None))
            .order_by(ReplyPartRow.idx)
        )
        return ReplyInfo(
            row.id,
            row.ticket,
            ReplyState(row.state),
            row.text,
            ChatUserId(row.author),
            tuple(TweetId(i) for i in ids if i),
            row.error,
        )

    def confirm_reply(self, reply_id: int, user: ChatUserId) -> bool:
        done = self.s.execute(
            update(ReplyRow)
            .where(ReplyRow.id == reply_id, ReplyRow.state == ReplyState.CONFIRM)
            .values(state=ReplyState.PENDING, confirmed_by=user)
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def cancel_reply(self, reply_id: int) -> bool:
        """Cancels a reply still awaiting confirmation (never one already sent on)."""
        done = self.s.execute(
            update(ReplyRow)
            .where(ReplyRow.id == reply_id, ReplyRow.state == ReplyState.CONFIRM)
            .values(state=ReplyState.CANCELLED)
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]

    def finish_reply(self, reply_id: int, state: ReplyState, error: str | None = None) -> None:
        self.s.execute(
            update(ReplyRow).where(ReplyRow.id == reply_id).values(state=state, error=error)
        )

    def first_response(self, ticket: int) -> None:
        """Stamps the ticket's first public response now, unless it has one."""
        self.s.execute(
            update(TicketRow)
            .where(TicketRow.number == ticket, TicketRow.first_response_at.is_(None))
            .values(first_response_at=self.now)
        )

    def part_sent(self, part: PendingPart, tweet_id: TweetId) -> bool:
        """Records a part X accepted; False if our claim had expired (then it changes
        nothing, so nothing is recorded twice)."""
        done = self.s.execute(
            update(ReplyPartRow)
            .where(ReplyPartRow.id == part.id, ReplyPartRow.claimed_by == part.token)
            .values(state=PartState.SENT, tweet_id=tweet_id, claimed_by=None)
        )
        if not done.rowcount:  # type: ignore[attr-defined]
            return False
        if not self.tweet_known(tweet_id):
            self.s.add(
                TicketTweetRow(
                    tweet_id=tweet_id, ticket=part.ticket, kind="reply", created_at=self.now
                )
            )
        return True

    def reply_tweet_ids(self, ticket: int) -> set[str]:
        return set(
            self.s.scalars(
                select(TicketTweetRow.tweet_id).where(
                    TicketTweetRow.ticket == ticket, TicketTweetRow.kind == "reply"
                )
            )
        )

    def part_refused(self, part: PendingPart, reason: str) -> bool:
        """Records X's refusal; False if our claim had expired (then it changes nothing)."""
        done = self.s.execute(
            update(ReplyPartRow)
            .where(ReplyPartRow.id == part.id, ReplyPartRow.claimed_by == part.token)
            .values(state=PartState.REFUSED, claimed_by=None)
        )
        return bool(done.rowcount)  # type: ignore[attr-defined]

    # --- small durable state

    def get(self, key: str) -> str | None:
        row = self.s.get(KeyValueRow, key)
        return row.value if row else None

    def put(self, key: str, value: str) -> None:
        row = self.s.get(KeyValueRow, key)
        if row is None:
            self.s.add(KeyValueRow(key=key, value=value))
        else:
            row.value = value


class Store:
    """The database: short transactions, one per unit of work."""

    def __init__(self, url: str, *, clock: Any = None, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._clock = clock

    def now(self) -> datetime:
        return self._clock.now() if self._clock is not None else datetime.now(UTC)

    @contextmanager
    def tx(self) -> Iterator[Tx]:
        try:
            with self._sessions() as s, s.begin():
                yield Tx(s, self.now())
        except IntegrityError as e:
            raise Conflict(str(e.orig)) from e

    def dispose(self) -> None:
        self.engine.dispose()

    # --- KeyValue port (adapters' sync tokens, device ids, replay guard)

    def get(self, key: str) -> str | None:
        with self.tx() as t:
            return t.get(key)

    def put(self, key: str, value: str) -> None:
        with self.tx() as t:
            t.put(key, value)

    def hold_lease(self, name: str, owner: str, ttl: timedelta) -> bool:
        """Takes or renews the lease `name`; False while another live owner holds it."""
        now = self.now()
        try:
            with self.tx() as t:
                done = t.s.execute(
                    update(LeaseRow)
                    .where(
                        LeaseRow.name == name,
                        or_(LeaseRow.owner == owner, LeaseRow.expires_at < now),
                    )
                    .values(owner=owner, expires_at=now + ttl)
                )
                if done.rowcount:  # type: ignore[attr-defined]
                    return True
                if t.s.get(LeaseRow, name) is not None:
                    return False
                t.s.add(LeaseRow(name=name, owner=owner, expires_at=now + ttl))
        except Conflict:
            return False  # another instance created it first
        return True

    def release_lease(self, name: str, owner: str) -> None:
        with self.tx() as t:
            t.s.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.owner == owner))

    def was_seen(self, scope: str, event_id: str) -> bool:
        with self.tx() as t:
            return t.s.get(SeenEventRow, (scope, event_id)) is not None

    def first_sight(self, scope: str, event_id: str) -> bool:
        try:
            with self.tx() as t:
                t.s.add(SeenEventRow(scope=scope, event_id=event_id, seen_at=t.now))
        except Conflict:
            return False
        return True

    def forget_events_before(self, when: datetime) -> None:
        with self.tx() as t:
            t.s.execute(delete(SeenEventRow).where(SeenEventRow.seen_at < when))

    # --- chat outbox claims

    def _due(self, now: datetime) -> Any:
        return (
            select(OutboxRow, TicketRow.root)
            .outerjoin(TicketRow, TicketRow.number == OutboxRow.ticket)
            .where(
                OutboxRow.state.in_((PostState.PENDING, PostState.UNKNOWN)),
                or_(OutboxRow.not_before.is_(None), OutboxRow.not_before <= now),
                or_(OutboxRow.in_thread.is_(False), TicketRow.root.is_not(None)),
            )
        )

    def due_lanes(self) -> list[tuple[Platform, str]]:
        """The channels with posts due: each is delivered by its own lane."""
        with self.tx() as t:
            sub = self._due(t.now).subquery()
            rows = t.s.execute(select(sub.c.platform, sub.c.channel).distinct())
            return [(r[0], r[1]) for r in rows]

    def due_posts(
        self, limit: int = 500, *, platform: str | None = None, channel: str | None = None
    ) -> list[PendingPost]:
        """Pending posts whose thread (if any) exists, oldest first."""
        with self.tx() as t:
            q = self._due(t.now)
            if platform is not None:
                q = q.where(OutboxRow.platform == platform, OutboxRow.channel == channel)
            q = q.order_by(OutboxRow.id).limit(limit)
            return [_pending_post(row, root) for row, root in t.s.execute(q)]

    def expire_claims(self, lease: timedelta) -> int:
        """Claims older than `lease` belong to a process that died: their outcome is unknown."""
        cutoff = self.now() - lease
        n = 0
        with self.tx() as t:
            for table, sending, unknown in (
                (OutboxRow, PostState.SENDING, PostState.UNKNOWN),
                (ReplyPartRow, PartState.SENDING, PartState.UNKNOWN),
            ):
                done = t.s.execute(
                    update(table)
                    .where(table.state == sending, table.claimed_at <= cutoff)
                    .values(state=unknown, claimed_by=None, not_before=None)
                )
                n += done.rowcount  # type: ignore[attr-defined]
        return n

    def post_done(self, post: PendingPost, message_id: MessageId) -> bool:
        """Records a landed post; False if our claim had expired (then it changes nothing)."""
        return self.settle_and_claim((post, message_id), None)[0]

    def settle_and_claim(
        self, landed: tuple[PendingPost, MessageId] | None, claim: PendingPost | None
    ) -> tuple[bool, PendingPost | None]:
        """Records one landed post and claims the next, in one commit.

        The record is fenced on the claim token (False if the claim had expired); the
        claim is compare-and-set on the state (None if another instance had it first).
        """
        recorded = False
        claimed = None
        with self.tx() as t:
            if landed is not None:
                post, message_id = landed
                done = t.s.execute(
                    update(OutboxRow)
                    .where(OutboxRow.id == post.id, OutboxRow.claimed_by == post.token)
                    .values(
                        state=PostState.DONE, message_id=message_id, error=None, claimed_by=None
                    )
                )
                recorded = bool(done.rowcount)  # type: ignore[attr-defined]
                ticket = post.outgoing.ticket
                if recorded and post.outgoing.is_root and ticket is not None:
                    t.set_root(ticket, message_id)
            if claim is not None and (
                token := _claim(t, OutboxRow, claim.id, claim.state, PostState.SENDING)
            ):
                claimed = replace(claim, token=token)
        return recorded, claimed

    def post_retry(
        self, post: PendingPost, not_before: datetime, error: str, *, unknown: bool
    ) -> None:
        self._release(
            OutboxRow,
            post.id,
            post.token,
            PostState.UNKNOWN if unknown else PostState.PENDING,
            not_before=not_before,
            error=error,
        )

    def post_failed(self, post: PendingPost, error: str) -> None:
        """The platform refused for good (no access to the channel): stop and say so."""
        self._release(OutboxRow, post.id, post.token, PostState.FAILED, error=error)

    def _release(self, table: Any, row_id: int, token: str, state: str, **values: Any) -> None:
        with self.tx() as t:
            t.s.execute(
                update(table)
                .where(table.id == row_id, table.claimed_by == token)
                .values(state=state, claimed_by=None, **values)
            )

    # --- reply parts

    def due_parts(self, limit: int = 200) -> list[PendingPart]:
        """The next part of each reply chain that is ready to go."""
        now = self.now()
        with self.tx() as t:
            replies = t.s.scalars(
                select(ReplyRow)
                .where(ReplyRow.state == ReplyState.PENDING)
                .order_by(ReplyRow.id)
                .limit(limit)
            ).all()
            out = []
            for r in replies:
                parts = t.s.scalars(
                    select(ReplyPartRow)
                    .where(ReplyPartRow.reply == r.id)
                    .order_by(ReplyPartRow.idx)
                ).all()
                prev = r.in_reply_to
                for p in parts:
                    if p.state == PartState.SENT:
                        prev = p.tweet_id or prev
                        continue
                    ready = p.state in (PartState.PENDING, PartState.UNKNOWN) and (
                        p.not_before is None or p.not_before <= now
                    )
                    if ready:
                        out.append(
                            PendingPart(
                                p.id,
                                r.id,
                                r.ticket,
                                p.idx,
                                len(parts),
                                p.text,
                                TweetId(prev),
                                PartState(p.state),
                                r.created_at,
                                p.attempts,
                            )
                        )
                    break
            return out

    def claim_part(self, part: PendingPart) -> PendingPart | None:
        with self.tx() as t:
            token = _claim(t, ReplyPartRow, part.id, part.state, PartState.SENDING)
        return replace(part, token=token, attempts=part.attempts + 1) if token else None

    def part_retry(self, part: PendingPart, not_before: datetime, *, unknown: bool) -> None:
        self._release(
            ReplyPartRow,
            part.id,
            part.token,
            PartState.UNKNOWN if unknown else PartState.PENDING,
            not_before=not_before,
        )

    def counts(self) -> dict[str, int]:
        """Gauges for /metrics."""
        with self.tx() as t:

            def count(table: Any, *where: Any) -> int:
                return t.s.scalar(select(func.count()).select_from(table).where(*where)) or 0

            return {
                "tickets_open": count(TicketRow, TicketRow.state == TicketState.OPEN.value),
                "outbox_pending": count(
                    OutboxRow,
                    OutboxRow.state.in_((PostState.PENDING, PostState.UNKNOWN, PostState.SENDING)),
                ),
                "outbox_failed": count(OutboxRow, OutboxRow.state == PostState.FAILED),
                "replies_pending": count(
                    ReplyRow, ReplyRow.state.in_((ReplyState.PENDING, ReplyState.CONFIRM))
                ),
            }


def _claim(t: Tx, table: Any, row_id: int, state: str, sending: str) -> str | None:
    """Compare-and-set from `state` to `sending`; the claim's token, or None if lost."""
    token = uuid.uuid4().hex
    done = t.s.execute(
        update(table)
        .where(table.id == row_id, table.state == state)
        .values(state=sending, claimed_at=t.now, claimed_by=token, attempts=table.attempts + 1)
    )
    return token if done.rowcount else None  # type: ignore[attr-defined]


def _pending_post(row: OutboxRow, root: str | None) -> PendingPost:
    actions = tuple(Action(a["id"], a["label"], a["value"]) for a in (row.actions or []))
    out = Outgoing(
        key=row.key,
        channel=ChannelId(row.channel),
        body=Rich.from_json(row.body),
        thread_root=MessageId(root) if row.in_thread and root else None,
        ticket=row.ticket,
        tweet_id=TweetId(row.tweet_id) if row.tweet_id else None,
        actions=actions,
        is_root=row.is_root,
    )
    return PendingPost(row.id, out, row.platform, PostState(row.state))  # type: ignore[arg-type]


def make_engine(url: str, *, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers run beside the writer; a busy timeout rides out short locks.
            cur = dbapi_conn.cursor()
            if ":memory:" not in url and url not in ("sqlite://", "sqlite:///"):
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, echo=echo, pool_pre_ping=True)
