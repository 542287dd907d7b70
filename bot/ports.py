"""The ports the core depends on; adapters implement them, tests fake them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bot.domain import (
    ChannelId,
    ChatMessage,
    ChatUserId,
    MessageId,
    Outgoing,
    Platform,
    Rich,
    ThreadRef,
    Tweet,
    TweetId,
    XUser,
)


class RateLimited(Exception):
    """The remote said to wait; `until` is when it may be asked again."""

    def __init__(self, until: datetime, what: str = "") -> None:
        super().__init__(f"rate limited until {until.isoformat()} {what}".strip())
        self.until = until
        self.what = what


class TweetRefused(Exception):
    """X said no for good (deleted tweet, duplicate, reply not allowed): never retry blindly."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class Unavailable(Exception):
    """A remote is down or answered 5xx: worth retrying later."""


class PlatformRefused(Exception):
    """A chat platform cannot be used as configured (an encrypted room, no access)."""


class Clock(Protocol):
    def now(self) -> datetime: ...


class TweetSource(Protocol):
    async def me(self) -> XUser: ...

    async def mentions(self, since_id: TweetId | None) -> list[Tweet]:
        """Every mention newer than `since_id`, all pages, newest first.

        Raises RateLimited (with the reset time) rather than waiting.
        """
        ...

    async def search(self, query: str, since_id: TweetId | None) -> list[Tweet]:
        """Recent-search results newer than `since_id`, newest first (`x.search_query`)."""
        ...


class TweetSink(Protocol):
    async def post(self, text: str, in_reply_to: TweetId) -> TweetId:
        """Posts one reply; raises TweetRefused, RateLimited or Unavailable."""
        ...

    async def find_own_reply(
        self, in_reply_to: TweetId, text: str, exclude: Collection[str] = ()
    ) -> TweetId | None:
        """Our own tweet replying to `in_reply_to` with this text, if one went out;
        tweets in `exclude` (already recorded for other replies) never count."""
        ...


@dataclass(frozen=True, slots=True)
class CommandContext:
    """Who asked, and where: a thread gives the default ticket."""

    platform: Platform
    channel: ChannelId
    user: ChatUserId
    thread_root: MessageId | None = None


MessageHandler = Callable[[ChatMessage], Awaitable[None]]
CommandHandler = Callable[[str, CommandContext], Awaitable[Rich]]
ActionHandler = Callable[[str, str, ChatUserId], Awaitable[None]]  # action id, value, user


class ChatPlatform(Protocol):
    """One chat platform (Slack or Matrix) as the core sees it."""

    name: Platform

    async def post(self, message: Outgoing) -> MessageId:
        """Posts a message (a thread root, or in a thread when `thread_root` is set)."""
        ...

    async def find(self, message: Outgoing) -> MessageId | None:
        """The message with this key if an earlier `post` landed after all."""
        ...

    async def mark(self, thread: ThreadRef, state: str) -> None:
        """Mirrors a ticket state on the thread root (a reaction)."""
        ...

    async def respond(self, ctx: CommandContext, body: Rich) -> None:
        """Answers a command so only the asker sees it where the platform allows.

        Slack: an ephemeral message (in the thread when there is one); Matrix: an
        `m.notice` in the same thread or room.
        """
        ...

    async def start(
        self,
        on_message: MessageHandler,
        on_command: CommandHandler,
        on_action: ActionHandler,
    ) -> None:
        """Begins receiving. A human message starting with `!` is a command: the
        adapter strips the `!` and an optional leading `ticket ` word, calls
        `on_command(text, ctx)` and delivers the returned answer with `respond`
        (Slack slash commands go to `on_command` too, answered in the ack).
        Every other human message goes to `on_message`. A reaction or button
        confirming an `Outgoing.actions` entry calls `on_action(id, value, user)`.
        """
        ...

    async def stop(self) -> None: ...

    def health(self) -> dict[str, object]: ...


class KeyValue(Protocol):
    """Small durable state for adapters: sync tokens, event ids already handled."""

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, value: str) -> None: ...

    def was_seen(self, scope: str, event_id: str) -> bool:
        """Whether `first_sight` recorded this event already (without recording it)."""
        ...

    def first_sight(self, scope: str, event_id: str) -> bool:
        """Records the event; True only the first time it is seen (replay guard)."""
        ...
