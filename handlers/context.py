"""What every handler works with: built once by the composition root (entrypoints/bootstrap.py)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.batch import Batch
from bot.config import Config, Department
from bot.domain import ChatMessage, ChatUserId, Outgoing, Platform, Rich, Ticket, TweetId, XUser
from bot.health import Health
from bot.outbox import ThreadMark, mark_key
from bot.ports import (
    ChatPlatform,
    Clock,
    Conflict,
    Metrics,
    PendingPart,
    TicketStore,
    TweetSink,
    TweetSource,
    UnitOfWork,
    UserGroups,
)

log = logging.getLogger("seva." + __name__)

# Agents' answers taken in one unit of work at most: the first answers' tweets leave
# while the next are taken (`Bridge.taking`).
TAKEN_TOGETHER = 5


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class PollState:
    """One X timeline the bot reads (mentions, search): its health between polls."""

    last_ok: datetime | None = None
    blocked_until: datetime | None = None
    error: str | None = None
    standby: bool = False  # another instance holds the poll lease


@dataclass
class Gate:
    """When a remote we send to (a chat platform, X posting) may be called again after
    failures: at once while calls succeed, then after waits that double with each
    failure in a row up to a cap, or at a time the remote named (a rate limit). A paused
    platform is asked again the same way: the next call is the probe."""

    failures: int = 0
    next_try: datetime | None = None

    def open(self, now: datetime) -> bool:
        return self.next_try is None or now >= self.next_try

    def failed(self, now: datetime, first: timedelta, cap: timedelta) -> datetime:
        self.failures += 1
        self.next_try = now + min(first * 2 ** min(self.failures - 1, 10), cap)
        return self.next_try

    def wait_until(self, until: datetime) -> None:
        self.next_try = until

    def succeeded(self) -> None:
        self.failures, self.next_try = 0, None


@dataclass
class Bridge:
    config: Config
    store: TicketStore
    source: TweetSource
    sink: TweetSink
    platforms: dict[Platform, ChatPlatform]
    metrics: Metrics
    clock: Clock = field(default_factory=SystemClock)
    me: XUser | None = None
    mentions: PollState = field(default_factory=lambda: PollState())
    search: PollState = field(default_factory=lambda: PollState())
    wake_posts: asyncio.Event = field(default_factory=asyncio.Event)
    wake_replies: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: datetime = field(init=False)
    instance: str = field(default_factory=lambda: uuid.uuid4().hex)
    shared: bool = False  # other instances may use the same database (not SQLite)
    tweeting: int = 0  # reply rounds sending tweets now (chat lanes let them go first)
    answering: int = 0  # agents' messages being taken as replies now (the same)
    # Agents' messages to take as replies (handlers/replies.py), reply parts to claim,
    # and parts X accepted to record (handlers/delivery.py), each together with the
    # others waiting.
    taking: Batch[tuple[ChatMessage, str], Any] = field(
        default_factory=lambda: Batch(most=TAKEN_TOGETHER)
    )
    claiming: Batch[PendingPart, PendingPart | None] = field(default_factory=lambda: Batch())
    landed: Batch[tuple[PendingPart, TweetId], None] = field(default_factory=lambda: Batch())
    handed: list[PendingPart] = field(default_factory=list)  # claimed as taken, to send
    health: Health = field(init=False)
    # When each chat platform, and X posting ("x.posting"), may be called again.
    gates: dict[str, Gate] = field(default_factory=dict)
    # The last post each platform refused for good: (key, channel, error, when).
    refusals: dict[str, tuple[str, str, str, datetime]] = field(default_factory=dict)
    usergroups: UserGroups | None = None  # Slack's, for `oncall.slack_usergroup`
    # Outbox keys of the scheduled posts (hand-offs, digests) this instance knows are
    # queued: the database's unique key decides, this only saves a look-up per tick.
    queued_keys: set[str] = field(default_factory=set)
    # user group -> (member it was made equal to, or None after a failure; when to look again)
    usergroups_synced: dict[str, tuple[ChatUserId | None, datetime]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.started_at = self.clock.now()
        self.health = Health(self.clock)

    def gate(self, name: str) -> Gate:
        return self.gates.setdefault(name, Gate())

    def kick(self) -> None:
        """Wakes delivery: something new waits in an outbox."""
        self.wake_posts.set()
        self.wake_replies.set()

    def department(self, dept_id: str) -> Department:
        d = self.config.department(dept_id)
        if d is None:  # a department removed from the config after its tickets were made
            d = self.config.department(self.config.default_department)
            assert d is not None
        return d

    def platform(self, name: Platform) -> ChatPlatform | None:
        return self.platforms.get(name)

    async def mirror(self, ticket: Ticket, state: ThreadMark) -> None:
        """Shows a state change on the thread root, through the chat outbox (so a mark a
        fault refused is tried again, not lost). Handlers that change the state in a unit
        of work queue the mark in that same unit with `queue_mark` instead."""
        if await self.store.run(queue_mark, ticket, state):
            self.kick()


async def queue_scheduled(
    b: Bridge,
    unit: Callable[[UnitOfWork, frozenset[str]], list[tuple[str, bool]]],
    raced: str,
) -> int:
    """Runs `unit`, which queues scheduled posts (hand-offs, digests) under unique outbox
    keys, skipping the keys this instance knows are queued; remembers the keys it
    returns and wakes delivery for the new ones. Another instance queueing the same key a
    moment earlier is logged as `raced` and changes nothing. How many were new."""
    try:
        queued = await b.store.run(unit, frozenset(b.queued_keys))
    except Conflict:
        log.info(raced)
        return 0
    n = 0
    for key, new in queued:
        b.queued_keys.add(key)
        n += new
    if n:
        b.kick()
    return n


def queue_mark(tx: UnitOfWork, ticket: Ticket, state: ThreadMark) -> bool:
    """Queues a mark of `state` on the ticket's thread root (a reaction), delivered in
    order with the channel's posts once the root exists. False if the ticket's thread
    is on no platform any more."""
    return tx.enqueue(
        Outgoing(
            key=mark_key(ticket.number, state),
            channel=ticket.channel,
            body=Rich(),
            ticket=ticket.number,
            mark=state,
        ),
        ticket.platform,
        in_thread=True,
        new_key=True,
    )
