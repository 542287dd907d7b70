"""The outbox claims, leases and replay guards of a unit of work (a mixin of `Tx`).

Claims are compare-and-set updates fenced by a claim token, so several instances can
share one PostgreSQL database: a row is claimed (committed) before its side effect,
and every later update names the token, so a claim that expired meanwhile changes
nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, bindparam, case, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from adapters.db.rare import rare
from adapters.db.tables import (
    AuditRow,
    InboxRow,
    LeaseRow,
    OutboxRow,
    ReplyPartRow,
    ReplyRow,
    SeenEventRow,
    TicketMoveRow,
    TicketRow,
    TicketTweetRow,
)
from bot.domain import (
    Action,
    ChannelId,
    ChatFile,
    MessageId,
    Outgoing,
    Platform,
    Rich,
    TweetId,
)
from bot.outbox import EventState, PartState, PostState, ReplyState, ThreadMark, thread_root_key
from bot.ports import InboxEvent, PendingPart, PendingPost

# The tables themselves: these statements run on every post, claim and event, and Core
# statements on a Table skip the ORM's bookkeeping (the CPU a ticket costs, bench/).
OUT = cast(Table, OutboxRow.__table__)
PART = cast(Table, ReplyPartRow.__table__)
REPLY = cast(Table, ReplyRow.__table__)
INBOX = cast(Table, InboxRow.__table__)
LEASE = cast(Table, LeaseRow.__table__)
SEEN = cast(Table, SeenEventRow.__table__)
TICKET = cast(Table, TicketRow.__table__)
MOVE = cast(Table, TicketMoveRow.__table__)
TWEETS = cast(Table, TicketTweetRow.__table__)
AUDIT = cast(Table, AuditRow.__table__)


class Claims:
    """Outbox claims, leases and replay guards, on the unit of work's session."""

    s: Session
    now: datetime

    @property
    def c(self) -> Connection:
        """The transaction's connection, for statements built once (`_CLAIM`, uow.py's
        `_TICKET`…): they skip the ORM session's work on each statement. Changes to ORM
        objects still pending are flushed first, as the session does before its own."""
        if self.s.identity_map or self.s.new:  # ORM objects loaded or added: may be dirty
            self.s.flush()
        return self.s.connection()

    def set_root(self, ticket: int, root: MessageId, key: str) -> None:
        """A thread root landed. When it opens the ticket's current thread, that thread
        exists now and the posts waiting for it become due. A root of a thread the ticket
        had already left (it was moved while the root was on its way) becomes no thread of
        the ticket's; it is only recorded as the thread that move left, which still finds
        the ticket."""
        moves = self.c.execute(_MOVES, {"b_number": ticket}).scalar()
        if moves is None:
            return
        if key == thread_root_key(ticket, moves):
            self.c.execute(_SET_ROOT, {"b_number": ticket, "b_root": root})
            return
        for left in range(moves):
            if key == thread_root_key(ticket, left):
                self.s.execute(
                    update(MOVE)
                    .where(
                        MOVE.c.ticket == ticket,
                        MOVE.c.n == left + 1,
                        MOVE.c.from_root.is_(None),
                    )
                    .values(from_root=root)
                )

    # --- leases

    def hold_lease(self, name: str, owner: str, ttl: timedelta) -> bool:
        """Takes or renews the lease `name`; False while another live owner holds it."""
        done = self.s.execute(
            update(LEASE)
            .where(
                LEASE.c.name == name,
                or_(LEASE.c.owner == owner, LEASE.c.expires_at < self.now),
            )
            .values(owner=owner, expires_at=self.now + ttl)
        )
        if done.rowcount:  # type: ignore[attr-defined]
            return True
        # No row yet, or another live owner: insert unless one exists (never a conflict
        # that would roll back the caller's whole unit of work).
        created = self.s.execute(
            _insert_ignoring_conflicts(self.s, LEASE)
            .values(name=name, owner=owner, expires_at=self.now + ttl)
            .returning(LEASE.c.name)
        )
        return created.first() is not None

    def release_lease(self, name: str, owner: str) -> None:
        self.s.execute(delete(LEASE).where(LEASE.c.name == name, LEASE.c.owner == owner))

    # --- replay guards (Slack event ids, Matrix event ids)

    def was_seen(self, scope: str, event_id: str) -> bool:
        found = select(SEEN.c.event_id).where(SEEN.c.scope == scope, SEEN.c.event_id == event_id)
        return self.s.execute(found).first() is not None

    def first_sight(self, scope: str, event_id: str) -> bool:
        """Records the event; True only the first time (never a conflict that would roll
        back the caller's unit of work)."""
        done = self.s.execute(
            _insert_ignoring_conflicts(self.s, SEEN)
            .values(scope=scope, event_id=event_id, seen_at=self.now)
            .returning(SEEN.c.event_id)
        )
        return done.first() is not None

    def forget_events_before(self, when: datetime) -> None:
        """Replay guards and handled events older than `when` protect nothing now."""
        self.s.execute(delete(SEEN).where(SEEN.c.seen_at < when))
        self.s.execute(
            delete(INBOX).where(
                INBOX.c.received_at < when,
                INBOX.c.state.in_((EventState.DONE, EventState.FAILED)),
            )
        )

    # --- the inbox of incoming events

    def accept_events(self, source: str, events: Sequence[tuple[str, str]]) -> list[bool]:
        """Stores events (id, payload) to be handled; for each, whether it is new (False:
        a redelivery of one stored before, which is left as it was)."""
        if not events:
            return []
        rows = [
            {
                "source": source,
                "event_id": event_id,
                "payload": payload,
                "state": EventState.PENDING,
                "received_at": self.now,
                "attempts": 0,
            }
            for event_id, payload in events
        ]
        accept = _insert_ignoring_conflicts(self.s, INBOX, INBOX.c.event_id)
        fresh = set(self.c.execute(accept, rows).scalars())
        return [event_id in fresh for event_id, _ in events]

    def claim_events(self, source: str, limit: int) -> list[InboxEvent]:
        """Claims up to `limit` events due, oldest first (compare-and-set)."""
        conn = self.c
        ids = list(
            conn.execute(_DUE_EVENTS, {"source": source, "now": self.now, "limit": limit}).scalars()
        )
        if not ids:
            return []
        token = uuid.uuid4().hex
        rows = conn.execute(_CLAIM_EVENTS, {"ids": ids, "now": self.now, "token": token})
        claimed = [InboxEvent(r[0], source, r[1], r[2], r[3], token) for r in rows]
        return sorted(claimed, key=lambda e: e.id)

    def events_done(self, events: Sequence[InboxEvent]) -> None:
        """Marks handled events done: one statement for each claim they came in."""
        claims: dict[str, list[int]] = {}
        for e in events:
            claims.setdefault(e.token, []).append(e.id)
        conn = self.c
        for token, ids in claims.items():
            conn.execute(_EVENTS_DONE, {"ids": ids, "token": token})

    def event_retry(
        self, event: InboxEvent, not_before: datetime, error: str, *, give_up: bool = False
    ) -> None:
        """Back to pending until `not_before`, or failed for good (`give_up`)."""
        self.s.execute(
            update(INBOX)
            .where(INBOX.c.id == event.id, INBOX.c.claimed_by == event.token)
            .values(
                state=EventState.FAILED if give_up else EventState.PENDING,
                claimed_by=None,
                not_before=not_before,
                error=error[:2000],
            )
        )

    # --- chat outbox claims

    def _due(self, *columns: Any) -> Any:
        thread = _thread_root()
        return (
            select(*(columns or (OUT, thread.label("thread"))))
            .outerjoin(TICKET, TICKET.c.number == OUT.c.ticket)
            .where(
                rare(OUT.c.state.in_((PostState.PENDING, PostState.UNKNOWN))),
                or_(OUT.c.not_before.is_(None), OUT.c.not_before <= self.now),
                or_(OUT.c.in_thread.is_(False), thread.is_not(None)),
            )
        )

    def due_lanes(self, limit: int = 1000) -> list[tuple[Platform, str]]:
        """The channels with posts due: each is delivered by its own lane."""
        rows = self.s.execute(self._due(OUT.c.platform, OUT.c.channel).distinct().limit(limit))
        return [(r[0], r[1]) for r in rows]

    def due_posts(
        self, limit: int = 500, *, platform: str | None = None, channel: str | None = None
    ) -> list[PendingPost]:
        """Pending posts whose thread (if any) exists, oldest first."""
        if platform is not None:
            lane = {"b_platform": platform, "b_channel": channel}
            rows = self.c.execute(_DUE_IN_LANE, {**lane, "b_now": self.now, "b_limit": limit})
            return [_pending_post(row) for row in rows]
        q = self._due().order_by(OUT.c.id).limit(limit)
        return [_pending_post(row) for row in self.s.execute(q)]

    def expire_claims(self, lease: timedelta) -> int:
        """Claims older than `lease` belong to a process that died: their outcome is unknown."""
        cutoff = self.now - lease
        n = 0
        for table, sending, unknown in (
            (OUT, PostState.SENDING, PostState.UNKNOWN),
            (PART, PartState.SENDING, PartState.UNKNOWN),
            (INBOX, EventState.HANDLING, EventState.PENDING),  # handled again
        ):
            done = self.s.execute(
                update(table)
                .where(rare(table.c.state == sending), table.c.claimed_at <= cutoff)
                .values(state=unknown, claimed_by=None, not_before=None)
            )
            n += done.rowcount  # type: ignore[attr-defined]
        return n

    def claim_posts(self, platform: str, channel: str, limit: int) -> list[PendingPost]:
        """Claims up to `limit` posts due in one channel, oldest first (compare-and-set:
        one a concurrent claim took first is left out). They share one claim token."""
        due = self.due_posts(limit, platform=platform, channel=channel)
        if not due:
            return []
        token = uuid.uuid4().hex
        claim = {"b_ids": [p.id for p in due], "b_now": self.now, "b_token": token}
        taken = set(self.c.execute(_CLAIM_POSTS, claim).scalars())
        return [replace(p, token=token) for p in due if p.id in taken]

    def settle_post(self, post: PendingPost, message_id: MessageId) -> bool:
        """Records a landed post (and a root's thread); False if our claim had expired,
        and then it changes nothing."""
        landed = {"b_id": post.id, "b_token": post.token, "b_message": message_id}
        recorded = bool(self.c.execute(_POST_DONE, landed).rowcount)
        ticket = post.outgoing.ticket
        if recorded and post.outgoing.is_root and ticket is not None:
            self.set_root(ticket, message_id, post.outgoing.key)
        return recorded

    def unclaim_post(self, post: PendingPost) -> None:
        """Hands back a claimed post that was never tried, as it was."""
        self._release(OUT, post.id, post.token, post.state)

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
        if landed is not None:
            recorded = self.settle_post(*landed)
        if claim is not None and (
            token := self._claim(OUT, claim.id, claim.state, PostState.SENDING)
        ):
            claimed = replace(claim, token=token)
        return recorded, claimed

    def post_retry(
        self, post: PendingPost, not_before: datetime, error: str, *, unknown: bool
    ) -> None:
        self._release(
            OUT,
            post.id,
            post.token,
            PostState.UNKNOWN if unknown else PostState.PENDING,
            not_before=not_before,
            error=error,
        )

    def post_failed(self, post: PendingPost, error: str) -> None:
        """The platform refused for good (no access to the channel): stop and say so."""
        self._release(OUT, post.id, post.token, PostState.FAILED, error=error)

    def _release(self, table: Any, row_id: int, token: str, state: str, **values: Any) -> None:
        self.s.execute(
            update(table)
            .where(table.c.id == row_id, table.c.claimed_by == token)
            .values(state=state, claimed_by=None, **values)
        )

    # --- reply parts

    def due_parts(self, limit: int = 200) -> list[PendingPart]:
        """The next part of each reply chain that is ready to go."""
        return self._next_parts(self.c.execute(_DUE_PARTS, {"b_limit": limit}), _PENDING)

    def claim_next_parts(self, replies: Sequence[int]) -> list[PendingPart]:
        """Claims the next part of each of these replies' chains that is ready to go: the
        first tweet of an answer just taken, claimed in the unit that took it."""
        if not replies:
            return []
        rows = self.c.execute(_NEXT_PARTS, {"b_replies": list(replies)})
        due = self._next_parts(rows, _PENDING_OF)
        return [claimed for part in due if (claimed := self.claim_part(part)) is not None]

    def _next_parts(self, rows: Any, pending: Any) -> list[PendingPart]:
        """The next ready part of each chain, from rows of (`pending` reply, its parts)."""
        chains: dict[int, list[Any]] = {}
        for row in rows:
            chains.setdefault(row[0], []).append(row._mapping)
        out = []
        for reply, parts in chains.items():
            prev = parts[0][pending.c.in_reply_to]
            for p in parts:
                if p[PART.c.state] == PartState.SENT:
                    prev = p[PART.c.tweet_id] or prev
                    continue
                not_before = p[PART.c.not_before]
                ready = p[PART.c.state] in (PartState.PENDING, PartState.UNKNOWN) and (
                    not_before is None or not_before <= self.now
                )
                if ready:
                    out.append(
                        PendingPart(
                            p[PART.c.id],
                            reply,
                            p[pending.c.ticket],
                            p[PART.c.idx],
                            len(parts),
                            p[PART.c.text],
                            TweetId(prev),
                            PartState(p[PART.c.state]),
                            p[pending.c.created_at],
                            p[PART.c.attempts],
                            media=tuple(ChatFile.from_json(m) for m in p[PART.c.media] or ()),
                        )
                    )
                break
        return out

    def claim_part(self, part: PendingPart) -> PendingPart | None:
        token = self._claim(PART, part.id, part.state, PartState.SENDING)
        return replace(part, token=token, attempts=part.attempts + 1) if token else None

    def part_retry(self, part: PendingPart, not_before: datetime, *, unknown: bool) -> None:
        self._release(
            PART,
            part.id,
            part.token,
            PartState.UNKNOWN if unknown else PartState.PENDING,
            not_before=not_before,
        )

    def _claim(self, table: Any, row_id: int, state: str, sending: str) -> str | None:
        """Compare-and-set from `state` to `sending`; the claim's token, or None if lost."""
        token = uuid.uuid4().hex
        claim = {"b_id": row_id, "b_state": state, "b_sending": sending}
        done = self.c.execute(_CLAIM[table.name], {**claim, "b_now": self.now, "b_token": token})
        return token if done.rowcount else None


def _thread_root() -> Any:
    """The root of the thread an in-thread post goes to: the one it was pinned to, else
    its ticket's thread in the channel it was queued for. That is the ticket's current
    thread, or, when the ticket moved away between being read and the post being queued
    (a concurrent `move`), the thread the move left there."""
    left_there = (
        select(MOVE.c.from_root)
        .where(
            MOVE.c.ticket == OUT.c.ticket,
            MOVE.c.from_platform == OUT.c.platform,
            MOVE.c.from_channel == OUT.c.channel,
        )
        .order_by(MOVE.c.n.desc())
        .limit(1)
        .scalar_subquery()
    )
    here = and_(OUT.c.platform == TICKET.c.platform, OUT.c.channel == TICKET.c.channel)
    return func.coalesce(OUT.c.thread_root, case((here, TICKET.c.root), else_=left_there))


# A channel's lane: its posts due, claimed together, and the roots that landed.
_THREAD = _thread_root()
_DUE_IN_LANE = (
    select(OUT, _THREAD.label("thread"))
    .outerjoin(TICKET, TICKET.c.number == OUT.c.ticket)
    .where(
        rare(OUT.c.state.in_((PostState.PENDING, PostState.UNKNOWN))),
        or_(OUT.c.not_before.is_(None), OUT.c.not_before <= bindparam("b_now")),
        or_(OUT.c.in_thread.is_(False), _THREAD.is_not(None)),
        OUT.c.platform == bindparam("b_platform"),
        OUT.c.channel == bindparam("b_channel"),
    )
    .order_by(OUT.c.id)
    .limit(bindparam("b_limit"))
)
_CLAIM_POSTS = (
    update(OUT)
    .where(
        OUT.c.id.in_(bindparam("b_ids", expanding=True)),
        OUT.c.state.in_((PostState.PENDING, PostState.UNKNOWN)),
    )
    .values(
        state=PostState.SENDING,
        claimed_at=bindparam("b_now"),
        claimed_by=bindparam("b_token"),
        attempts=OUT.c.attempts + 1,
    )
    .returning(OUT.c.id)
)
_MOVES = select(TICKET.c.moves).where(TICKET.c.number == bindparam("b_number"))
_SET_ROOT = (
    update(TICKET).where(TICKET.c.number == bindparam("b_number")).values(root=bindparam("b_root"))
)

# The inbox's statements, built once: every event runs them (bench/pipeline.py's burst).
_DUE_EVENTS = (
    select(INBOX.c.id)
    .where(
        rare(INBOX.c.state == EventState.PENDING),
        INBOX.c.source == bindparam("source"),
        or_(INBOX.c.not_before.is_(None), INBOX.c.not_before <= bindparam("now")),
    )
    .order_by(INBOX.c.id)
    .limit(bindparam("limit"))
)
_CLAIM_EVENTS = (
    update(INBOX)
    .where(INBOX.c.id.in_(bindparam("ids", expanding=True)), INBOX.c.state == EventState.PENDING)
    .values(
        state=EventState.HANDLING,
        claimed_at=bindparam("now"),
        claimed_by=bindparam("token"),
        attempts=INBOX.c.attempts + 1,
    )
    .returning(INBOX.c.id, INBOX.c.event_id, INBOX.c.payload, INBOX.c.attempts)
)
_EVENTS_DONE = (
    update(INBOX)
    .where(
        INBOX.c.id.in_(bindparam("ids", expanding=True)),
        INBOX.c.claimed_by == bindparam("token"),
    )
    .values(state=EventState.DONE, claimed_by=None, error=None)
)


def _with_parts(replies: Any) -> tuple[Any, Any]:
    """Replies (a select of their id, ticket, in_reply_to and created_at) as a subquery,
    and the statement that reads them with their parts, each chain in order
    (`Claims._next_parts` reads its rows)."""
    pending = replies.subquery()
    chains = (
        select(pending, PART)
        .join(PART, PART.c.reply == pending.c.id)
        .order_by(pending.c.id, PART.c.idx)
    )
    return pending, chains


_REPLY_HEAD = select(REPLY.c.id, REPLY.c.ticket, REPLY.c.in_reply_to, REPLY.c.created_at)
# The replies waiting to be tweeted, with their parts (delivery's every round).
_PENDING, _DUE_PARTS = _with_parts(
    _REPLY_HEAD.where(rare(REPLY.c.state == ReplyState.PENDING))
    .order_by(REPLY.c.id)
    .limit(bindparam("b_limit"))
)
# Given replies still waiting, with their parts (answers just taken).
_PENDING_OF, _NEXT_PARTS = _with_parts(
    _REPLY_HEAD.where(
        REPLY.c.id.in_(bindparam("b_replies", expanding=True)),
        REPLY.c.state == ReplyState.PENDING,
    )
)

# A claim and a landed post, for every post and reply part.
_CLAIM = {
    t.name: update(t)
    .where(t.c.id == bindparam("b_id"), t.c.state == bindparam("b_state"))
    .values(
        state=bindparam("b_sending"),
        claimed_at=bindparam("b_now"),
        claimed_by=bindparam("b_token"),
        attempts=t.c.attempts + 1,
    )
    for t in (OUT, PART)
}
_POST_DONE = (
    update(OUT)
    .where(OUT.c.id == bindparam("b_id"), OUT.c.claimed_by == bindparam("b_token"))
    .values(state=PostState.DONE, message_id=bindparam("b_message"), error=None, claimed_by=None)
)

_IGNORING_CONFLICTS: dict[tuple[str, str, str | None], Any] = {}


def _insert_ignoring_conflicts(s: Session, table: Any, returning: Any = None) -> Any:
    """INSERT … ON CONFLICT DO NOTHING: a row that exists already is no error. Ask for
    `returning` (a column) to learn whether it was inserted, as psycopg reports no
    rowcount here: a row that existed returns nothing. Built once for each database,
    table and column. (Its rows come back in no set order: asking for the parameters'
    order makes SQLAlchemy send an executemany's rows one statement each on SQLite.)"""
    dialect = s.get_bind().dialect.name
    key = (dialect, table.name, None if returning is None else returning.name)
    if key not in _IGNORING_CONFLICTS:
        statement: Any
        if dialect == "sqlite":
            statement = sqlite.insert(table).on_conflict_do_nothing()
        elif dialect == "postgresql":
            statement = postgresql.insert(table).on_conflict_do_nothing()
        else:
            raise ValueError(f"unsupported database {dialect!r}: use SQLite or PostgreSQL")
        if returning is not None:
            statement = statement.returning(returning)
        _IGNORING_CONFLICTS[key] = statement
    return _IGNORING_CONFLICTS[key]


def _pending_post(row: Any) -> PendingPost:
    m = row._mapping
    actions = tuple(Action(a["id"], a["label"], a["value"]) for a in (m["actions"] or []))
    root = m["thread"]
    out = Outgoing(
        key=m["key"],
        channel=ChannelId(m["channel"]),
        body=Rich.from_json(m["body"]),
        thread_root=MessageId(root) if m["in_thread"] and root else None,
        ticket=m["ticket"],
        tweet_id=TweetId(m["tweet_id"]) if m["tweet_id"] else None,
        actions=actions,
        is_root=m["is_root"],
        mark=ThreadMark(m["mark"]) if m["mark"] else None,
    )
    return PendingPost(m["id"], out, m["platform"], PostState(m["state"]))
