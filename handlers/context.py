"""What every handler works with: built once by the composition root (entrypoints/bootstrap.py)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.config import Config, Department
from bot.domain import Platform, Ticket, XUser
from bot.outbox import ThreadMark
from bot.ports import ChatPlatform, Clock, Metrics, TicketStore, TweetSink, TweetSource

log = logging.getLogger("seva." + __name__)


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
    tweets_blocked_until: datetime | None = None  # X said 429 to posting
    shared: bool = False  # other instances may use the same database (not SQLite)

    def __post_init__(self) -> None:
        self.started_at = self.clock.now()

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
        """Shows a state change on the thread root; best effort, the database is the truth."""
        platform = self.platforms.get(ticket.platform)
        if platform is None or ticket.thread is None:
            return
        try:
            await platform.mark(ticket.thread, state)
        except Exception as e:
            log.warning("ticket.mirror_failed ticket=%d error=%s", ticket.number, type(e).__name__)
