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
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from adapters.db.tables import (
    InboxRow,
    LeaseRow,
    OutboxRow,
    ReplyPartRow,
    ReplyRow,
    SeenEventRow,
    TicketMoveRow,
    TicketRow,
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


class Claims:
    """Outbox claims, leases and replay guards, on the unit of work's session."""

    s: Session
    now: datetime

    def set_root(self, ticket: int, root: MessageId, key: str) -> None:
        """A thread root landed. When it opens the ticket's current thread, that thread
        exists now and the posts waiting for it become due. A root of a thread the ticket
        had already left (it was moved while the root was on its way) becomes no thread of
        the ticket's; it is only recorded as the thread that move left, which still finds
        the ticket."""
        moves = self.s.scalar(select(TicketRow.moves).where(TicketRow.number == ticket))
        if moves is None:
            return
        if key == thread_root_key(ticket, moves):
            self.s.execute(update(TicketRow).where(TicketRow.number == ticket).values(root=root))
            return
        for left in range(moves):
            if key == thread_root_key(ticket, left):
                self.s.execute(
                    update(TicketMoveRow)
                    .where(
                        TicketMoveRow.ticket == ticket,
                        TicketMoveRow.n == left + 1,
                        TicketMoveRow.from_root.is_(None),
                    )
                    .values(from_root=root)
                )

    # --- leases

    def hold_lease(self, name: str, owner: str, ttl: timedelta) -> bool:
        """Takes or renews the lease `name`; False while another live owner holds it."""
        done = self.s.execute(
            update(LeaseRow)
            .where(
                LeaseRow.name == name,
                or_(LeaseRow.owner == owner, LeaseRow.expires_at < self.now),
            )
            .values(owner=owner, expires_at=self.now + ttl)
        )
        if done.rowcount:  # type: ignore[attr-defined]
            return True
        # No row yet, or another live owner: insert unless one exists (never a conflict
        # that would roll back the caller's whole unit of work).
        created = self.s.execute(
            _insert_ignoring_conflicts(self.s, LeaseRow)
            .values(name=name, owner=owner, expires_at=self.now + ttl)
            .returning(LeaseRow.name)
        )
        return created.first() is not None

    def release_lease(self, name: str, owner: str) -> None:
        self.s.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.owner == owner))

    # --- replay guards (Slack event ids, Matrix event ids)

    def was_seen(self, scope: str, event_id: str) -> bool:
        return self.s.get(SeenEventRow, (scope, event_id)) is not None

    def first_sight(self, scope: str, event_id: str) -> bool:
        """Records the event; True only the first time (never a conflict that would roll
        back the caller's unit of work)."""
        done = self.s.execute(
            _insert_ignoring_conflicts(self.s, SeenEventRow)
            .values(scope=scope, event_id=event_id, seen_at=self.now)
            .returning(SeenEventRow.event_id)
        )
        return done.first() is not None

    def forget_events_before(self, when: datetime) -> None:
        """Replay guards and handled events older than `when` protect nothing now."""
        self.s.execute(delete(SeenEventRow).where(SeenEventRow.seen_at < when))
        self.s.execute(
            delete(InboxRow).where(
                InboxRow.received_at < when,
                InboxRow.state.in_((EventState.DONE, EventState.FAILED)),
            )
        )

    # --- the inbox of incoming events

    def accept_events(self, source: str, events: Sequence[tuple[str, str]]) -> list[bool]:
        """Stores events (id, payload) to be handled; for each, whether it is new (False:
        a redelivery of one stored before, which is left as it was)."""
        if not events:
            return []
        fresh = set(
            self.s.scalars(
                _insert_ignoring_conflicts(self.s, InboxRow)
                .values(
                    [
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
                )
                .returning(InboxRow.event_id)
            )
        )
        return [event_id in fresh for event_id, _ in events]

    def claim_events(self, source: str, limit: int) -> list[InboxEvent]:
        """Claims up to `limit` events due, oldest first (compare-and-set)."""
        due = (
            select(InboxRow.id)
            .where(
                InboxRow.state == EventState.PENDING,
                InboxRow.source == source,
                or_(InboxRow.not_before.is_(None), InboxRow.not_before <= self.now),
            )
            .order_by(InboxRow.id)
            .limit(limit)
        )
        ids = list(self.s.scalars(due))
        if not ids:
            return []
        token = uuid.uuid4().hex
        rows = self.s.execute(
            update(InboxRow)
            .where(InboxRow.id.in_(ids), InboxRow.state == EventState.PENDING)
            .values(
                state=EventState.HANDLING,
                claimed_at=self.now,
                claimed_by=token,
                attempts=InboxRow.attempts + 1,
            )
            .returning(InboxRow.id, InboxRow.event_id, InboxRow.payload, InboxRow.attempts)
        )
        claimed = [InboxEvent(r[0], source, r[1], r[2], r[3], token) for r in rows]
        return sorted(claimed, key=lambda e: e.id)

    def events_done(self, events: Sequence[InboxEvent]) -> None:
        for e in events:
            self.s.execute(
                update(InboxRow)
                .where(InboxRow.id == e.id, InboxRow.claimed_by == e.token)
                .values(state=EventState.DONE, claimed_by=None, error=None)
            )

    def event_retry(
        self, event: InboxEvent, not_before: datetime, error: str, *, give_up: bool = False
    ) -> None:
        """Back to pending until `not_before`, or failed for good (`give_up`)."""
        self.s.execute(
            update(InboxRow)
            .where(InboxRow.id == event.id, InboxRow.claimed_by == event.token)
            .values(
                state=EventState.FAILED if give_up else EventState.PENDING,
                claimed_by=None,
                not_before=not_before,
                error=error[:2000],
            )
        )

    # --- chat outbox claims

    def _due(self) -> Any:
        thread = _thread_root()
        return (
            select(OutboxRow, thread.label("thread"))
            .outerjoin(TicketRow, TicketRow.number == OutboxRow.ticket)
            .where(
                OutboxRow.state.in_((PostState.PENDING, PostState.UNKNOWN)),
                or_(OutboxRow.not_before.is_(None), OutboxRow.not_before <= self.now),
                or_(OutboxRow.in_thread.is_(False), thread.is_not(None)),
            )
        )

    def due_lanes(self) -> list[tuple[Platform, str]]:
        """The channels with posts due: each is delivered by its own lane."""
        sub = self._due().subquery()
        rows = self.s.execute(select(sub.c.platform, sub.c.channel).distinct())
        return [(r[0], r[1]) for r in rows]

    def due_posts(
        self, limit: int = 500, *, platform: str | None = None, channel: str | None = None
    ) -> list[PendingPost]:
        """Pending posts whose thread (if any) exists, oldest first."""
        q = self._due()
        if platform is not None:
            q = q.where(OutboxRow.platform == platform, OutboxRow.channel == channel)
        q = q.order_by(OutboxRow.id).limit(limit)
        return [_pending_post(row, root) for row, root in self.s.execute(q)]

    def expire_claims(self, lease: timedelta) -> int:
        """Claims older than `lease` belong to a process that died: their outcome is unknown."""
        cutoff = self.now - lease
        n = 0
        for table, sending, unknown in (
            (OutboxRow, PostState.SENDING, PostState.UNKNOWN),
            (ReplyPartRow, PartState.SENDING, PartState.UNKNOWN),
            (InboxRow, EventState.HANDLING, EventState.PENDING),  # handled again
        ):
            done = self.s.execute(
                update(table)
                .where(table.state == sending, table.claimed_at <= cutoff)
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
        taken = set(
            self.s.scalars(
                update(OutboxRow)
                .where(
                    OutboxRow.id.in_([p.id for p in due]),
                    OutboxRow.state.in_((PostState.PENDING, PostState.UNKNOWN)),
                )
                .values(
                    state=PostState.SENDING,
                    claimed_at=self.now,
                    claimed_by=token,
                    attempts=OutboxRow.attempts + 1,
                )
                .returning(OutboxRow.id)
            )
        )
        return [replace(p, token=token) for p in due if p.id in taken]

    def settle_post(self, post: PendingPost, message_id: MessageId) -> bool:
        """Records a landed post (and a root's thread); False if our claim had expired,
        and then it changes nothing."""
        done = self.s.execute(
            update(OutboxRow)
            .where(OutboxRow.id == post.id, OutboxRow.claimed_by == post.token)
            .values(state=PostState.DONE, message_id=message_id, error=None, claimed_by=None)
        )
        recorded = bool(done.rowcount)  # type: ignore[attr-defined]
        ticket = post.outgoing.ticket
        if recorded and post.outgoing.is_root and ticket is not None:
            self.set_root(ticket, message_id, post.outgoing.key)
        return recorded

    def unclaim_post(self, post: PendingPost) -> None:
        """Hands back a claimed post that was never tried, as it was."""
        self._release(OutboxRow, post.id, post.token, post.state)

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
            token := self._claim(OutboxRow, claim.id, claim.state, PostState.SENDING)
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
        self.s.execute(
            update(table)
            .where(table.id == row_id, table.claimed_by == token)
            .values(state=state, claimed_by=None, **values)
        )

    # --- reply parts

    def due_parts(self, limit: int = 200) -> list[PendingPart]:
        """The next part of each reply chain that is ready to go."""
        replies = self.s.scalars(
            select(ReplyRow)
            .where(ReplyRow.state == ReplyState.PENDING)
            .order_by(ReplyRow.id)
            .limit(limit)
        ).all()
        out = []
        for r in replies:
            parts = self.s.scalars(
                select(ReplyPartRow).where(ReplyPartRow.reply == r.id).order_by(ReplyPartRow.idx)
            ).all()
            prev = r.in_reply_to
            for p in parts:
                if p.state == PartState.SENT:
                    prev = p.tweet_id or prev
                    continue
                ready = p.state in (PartState.PENDING, PartState.UNKNOWN) and (
                    p.not_before is None or p.not_before <= self.now
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
                            media=tuple(ChatFile.from_json(m) for m in p.media or ()),
                        )
                    )
                break
        return out

    def claim_part(self, part: PendingPart) -> PendingPart | None:
        token = self._claim(ReplyPartRow, part.id, part.state, PartState.SENDING)
        return replace(part, token=token, attempts=part.attempts + 1) if token else None

    def part_retry(self, part: PendingPart, not_before: datetime, *, unknown: bool) -> None:
        self._release(
            ReplyPartRow,
            part.id,
            part.token,
            PartState.UNKNOWN if unknown else PartState.PENDING,
            not_before=not_before,
        )

    def _claim(self, table: Any, row_id: int, state: str, sending: str) -> str | None:
        """Compare-and-set from `state` to `sending`; the claim's token, or None if lost."""
        token = uuid.uuid4().hex
        done = self.s.execute(
            update(table)
            .where(table.id == row_id, table.state == state)
            .values(
                state=sending, claimed_at=self.now, claimed_by=token, attempts=table.attempts + 1
            )
        )
        return token if done.rowcount else None  # type: ignore[attr-defined]


def _thread_root() -> Any:
    """The root of the thread an in-thread post goes to: the one it was pinned to, else
    its ticket's thread in the channel it was queued for. That is the ticket's current
    thread, or, when the ticket moved away between being read and the post being queued
    (a concurrent `move`), the thread the move left there."""
    left_there = (
        select(TicketMoveRow.from_root)
        .where(
            TicketMoveRow.ticket == OutboxRow.ticket,
            TicketMoveRow.from_platform == OutboxRow.platform,
            TicketMoveRow.from_channel == OutboxRow.channel,
        )
        .order_by(TicketMoveRow.n.desc())
        .limit(1)
        .scalar_subquery()
    )
    here = and_(OutboxRow.platform == TicketRow.platform, OutboxRow.channel == TicketRow.channel)
    return func.coalesce(OutboxRow.thread_root, case((here, TicketRow.root), else_=left_there))


def _insert_ignoring_conflicts(s: Session, table: Any) -> Any:
    """INSERT … ON CONFLICT DO NOTHING: a row that exists already is no error (ask for
    RETURNING to learn whether it was inserted: psycopg reports no rowcount here)."""
    dialect = s.get_bind().dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    raise ValueError(f"unsupported database {dialect!r}: use SQLite or PostgreSQL")


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
        mark=ThreadMark(row.mark) if row.mark else None,
    )
    return PendingPost(row.id, out, row.platform, PostState(row.state))  # type: ignore[arg-type]
