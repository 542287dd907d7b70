"""The ticket store (`bot.ports.TicketStore`) on SQLAlchemy 2: short transactions, and
the outbox claims and leases that let several instances share one PostgreSQL database
(compare-and-set updates fenced by a claim token).
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import (
    Engine,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from adapters.db.tables import (
    LeaseRow,
    OutboxRow,
    ReplyPartRow,
    ReplyRow,
    SeenEventRow,
    TicketRow,
)
from adapters.db.uow import Tx
from bot.domain import (
    Action,
    ChannelId,
    MessageId,
    Outgoing,
    Platform,
    Rich,
    TicketState,
    TweetId,
)
from bot.outbox import PartState, PostState, ReplyState
from bot.ports import (
    Conflict,
    PendingPart,
    PendingPost,
)

P = ParamSpec("P")
T = TypeVar("T")

# Threads that run units of work for the event loop; fewer than the connection pool
# holds, so a unit of work never waits for a connection.
DB_THREADS = 4


class Store:
    """The database: short transactions, one per unit of work."""

    def __init__(self, url: str, *, clock: Any = None, echo: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._clock = clock
        self._threads: ThreadPoolExecutor | None = None

    async def run(
        self, fn: Callable[Concatenate[Tx, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(tx, *args)` in one transaction on the store's threads (`TicketStore.run`)."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(DB_THREADS, thread_name_prefix="seva-db")
        work = functools.partial(self._run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._threads, work)

    def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.tx() as tx:
            return fn(tx, *args, **kwargs)

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
        if self._threads is not None:
            self._threads.shutdown(wait=True)
            self._threads = None
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
