"""The ports the core depends on; adapters implement them, tests fake them."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from bot.domain import (
    Audit,
    ChannelId,
    ChatAction,
    ChatFile,
    ChatMessage,
    ChatUserId,
    DepartmentId,
    MessageId,
    Outgoing,
    Override,
    Platform,
    Rich,
    SavedAnswer,
    ThreadRef,
    Ticket,
    TicketState,
    Tweet,
    TweetId,
    XUser,
)
from bot.outbox import PartState, PostState, ReplyState, RetractState, ThreadMark

# A rate limit's reset is not trusted further than this: a 429 whose reset lay ten days
# ahead once stopped polling for ten days. Whatever a remote says, ask again by then.
MAX_RATE_LIMIT_WAIT = timedelta(minutes=15)


class RateLimited(Exception):
    """The remote said to wait; `until` is when it may be asked again."""

    def __init__(self, until: datetime, what: str = "") -> None:
        super().__init__(f"rate limited until {until.isoformat()} {what}".strip())
        self.until = until
        self.what = what

    def until_capped(self, now: datetime) -> datetime:
        """When to ask again: the remote's reset, but never later than
        `MAX_RATE_LIMIT_WAIT` from `now`."""
        return min(self.until, now + MAX_RATE_LIMIT_WAIT)


class TweetRefused(Exception):
    """X said no for good (deleted tweet, duplicate, reply not allowed): never retry blindly."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class Conflict(Exception):
    """A uniqueness constraint said no: another instance (or a replay) got there first.

    The whole unit of work was rolled back.
    """


class Unavailable(Exception):
    """A remote is down or answered 5xx: worth retrying later."""


class PlatformRefused(Exception):
    """A chat platform cannot be used as configured (an encrypted room, no access): a
    post it refuses this way fails for good, and no retry can cure it."""


class CredentialsRefused(PlatformRefused):
    """The platform refused our credentials (a revoked or expired token, an app without
    write permission). Nothing was done; the platform is paused and asked again now
    and then, and resumes by itself once a call succeeds."""


class NotYet(Exception):
    """An event refers to something not recorded yet (a thread whose root has just
    landed): handle it again a little later, after the events behind it."""


class StoreUnavailable(Unavailable):
    """The database could not be read or written (locked, refused, unreachable): the
    whole unit of work was rolled back and may be tried again later."""


@dataclass(frozen=True, slots=True)
class CheckLine:
    """One line of `seva check --online`: what was found (ok), or what to fix, in plain
    words. Each adapter's `check` says its part; any line not ok makes the check fail."""

    ok: bool
    text: str


class Clock(Protocol):
    def now(self) -> datetime: ...


class Count(enum.StrEnum):
    """What the bot counts; the `label` of a count is noted where it takes one."""

    MENTIONS = "mentions"
    TICKETS = "tickets"  # label: the department
    FOLLOWUPS = "followups"
    CHAT_POSTS = "chat_posts"  # label: the platform
    REPLY_TWEETS = "reply_tweets"
    REFUSALS = "refusals"
    ESCALATIONS = "escalations"
    COMMANDS = "commands"  # label: the command
    POLL_ERRORS = "poll_errors"  # label: what failed, e.g. mentions_rate_limited
    IGNORED_MENTIONS = "ignored_mentions"  # from a `triage.ignore` account
    URGENT_TICKETS = "urgent_tickets"  # label: the department
    CHAT_REFUSALS = "chat_refusals"  # label: the platform; posts it refused for good


class Metrics(Protocol):
    """What the handlers count and time; the adapter names and exports it (Prometheus)."""

    def count(self, what: Count, amount: float = 1, *, label: str | None = None) -> None: ...

    def reply_latency(self, seconds: float) -> None:
        """From an agent's thread message to X accepting the (last) tweet."""
        ...

    def first_response(self, department: str, seconds: float) -> None:
        """From the citizen's question to X accepting the ticket's first public reply."""
        ...


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
    async def post(self, text: str, in_reply_to: TweetId, media_ids: Sequence[str] = ()) -> TweetId:
        """Posts one reply (with uploaded media); raises TweetRefused, RateLimited or
        Unavailable."""
        ...

    async def upload_media(self, data: bytes, mimetype: str) -> str:
        """Uploads an image for a post; its media id. Raises TweetRefused when X will not
        take it, RateLimited or Unavailable."""
        ...

    async def delete(self, tweet_id: TweetId) -> None:
        """Deletes one of the account's posts; one already gone counts as deleted.
        Raises TweetRefused, RateLimited or Unavailable."""
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
    power_level: int | None = None  # where the platform has them (Matrix), in `channel`
    external: bool = False  # from another workspace (Slack Connect): see ChatMessage


@dataclass(frozen=True, slots=True)
class Standing:
    """A person in one department's channel or room, as far as the bot knows: the facts
    `bot.permissions` decides on. `power_level` is theirs there (Matrix); `external`:
    they belong to another workspace (Slack Connect)."""

    member: bool
    power_level: int | None = None
    external: bool = False


MessageHandler = Callable[[ChatMessage], Awaitable[None]]
CommandHandler = Callable[[str, CommandContext], Awaitable[Rich]]
ActionHandler = Callable[[ChatAction], Awaitable[None]]


class ChatPlatform(Protocol):
    """One chat platform (Slack or Matrix) as the core sees it."""

    name: Platform
    # Whether `respond` reaches only the asker (Slack's ephemerals) or the whole room.
    private_responses: bool
    # How many posts it takes at once without pacing them: the outbox claims that many
    # at a time (one when the adapter paces, so no claim waits in a paced queue).
    burst: int

    async def post(self, message: Outgoing) -> MessageId:
        """Posts a message (a thread root, or in a thread when `thread_root` is set)."""
        ...

    async def find(self, message: Outgoing) -> MessageId | None:
        """The message with this key if an earlier `post` landed after all."""
        ...

    async def mark(self, thread: ThreadRef, state: ThreadMark) -> None:
        """Mirrors a ticket state on the thread root (a reaction)."""
        ...

    async def update(self, channel: ChannelId, message_id: MessageId, body: Rich) -> None:
        """Replaces the text of one of the bot's own messages, dropping its buttons."""
        ...

    async def permalink(self, channel: ChannelId, message_id: MessageId) -> str:
        """A link a person can open to one message (a thread root, for `move`).

        Raises like `post` when the platform cannot say (then callers go without)."""
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
        """Begins receiving. A human message that `bot.addressing.command_text` calls a
        command (`!close`, `@seva close`) goes to `on_command(text, ctx)`, and the
        returned answer is delivered with `respond` (Slack slash commands go to
        `on_command` too, answered in the ack).
        Every other human message goes to `on_message`. A reaction or button
        confirming an `Outgoing.actions` entry calls `on_action`, whoever gave it:
        who may is for the core to say (`bot.permissions`).
        """
        ...

    async def stop(self) -> None: ...

    def health(self) -> dict[str, object]: ...

    async def fetch_file(self, file: ChatFile) -> bytes:
        """The bytes of a file attached to a message. Raises PlatformRefused when the
        platform will not hand it over (a missing scope, a deleted file)."""
        ...

    async def standing(self, channel: ChannelId, user: ChatUserId) -> Standing:
        """Whether `user` is a member of `channel` now, and their power level there where
        the platform has levels. Fails closed: when the platform cannot say, not a member.
        (Slack: conversations.members; Matrix: the member state and power levels.)"""
        ...

    async def find_user(self, name: str) -> ChatUserId | None:
        """A person by the name others know them by (a user name, display name or real
        name, with or without `@`), for `assign N name`; None unless exactly one matches."""
        ...


class UserGroups(Protocol):
    """A platform's named groups that page their members (Slack's `@health-oncall`)."""

    async def group_members(self, group: str) -> list[ChatUserId]: ...

    async def set_group_members(self, group: str, members: Sequence[ChatUserId]) -> None:
        """Makes `members` the whole group (raises RateLimited, Unavailable, PlatformRefused)."""
        ...


class KeyValue(Protocol):
    """Small durable state for adapters: sync tokens, event ids already handled.

    Async, because the database behind it must never be waited on from the event loop.
    """

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str) -> None: ...

    async def was_seen(self, scope: str, event_id: str) -> bool:
        """Whether `first_sight` recorded this event already (without recording it)."""
        ...

    async def first_sight(self, scope: str, event_id: str) -> bool:
        """Records the event; True only the first time it is seen (replay guard)."""
        ...


@dataclass(frozen=True, slots=True)
class InboxEvent:
    """An event an adapter stored before acknowledging it, claimed to be handled."""

    id: int
    source: str
    event_id: str
    payload: str
    attempts: int
    token: str = ""


class Inbox(Protocol):
    """Where adapters put what a platform sends before acknowledging it, and take it
    back to handle it: neither a crash nor a database hiccup after the ack loses it.

    Raises StoreUnavailable when the database cannot take it: then do not acknowledge,
    so that the platform delivers it again.
    """

    async def accept(self, source: str, event_id: str, payload: str) -> bool:
        """Stores one event; False when it was stored before (a redelivery)."""
        ...

    async def accept_all(
        self,
        source: str,
        events: Sequence[tuple[str, str]],
        then_put: tuple[str, str] | None = None,
    ) -> None:
        """Stores events (id, payload), and in the same commit `then_put` (key, value),
        such as the sync token that says these events were received."""
        ...

    async def claim(self, source: str, limit: int) -> list[InboxEvent]: ...
    async def done(self, events: Sequence[InboxEvent]) -> None: ...

    async def retry(
        self, event: InboxEvent, not_before: datetime, error: str, *, give_up: bool = False
    ) -> None: ...


# --- The ticket store: records it hands out, and its protocols


@dataclass(frozen=True, slots=True)
class NewTicket:
    """A ticket about to be opened. `matched` is what routed it (for the root, not
    stored); `urgent` the `triage.urgent` words it holds (any at all: urgent)."""

    tweet: Tweet
    department: DepartmentId
    platform: Platform
    channel: ChannelId
    oncall: ChatUserId | None
    matched: tuple[str, ...] = ()
    urgent: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PendingPost:
    id: int
    outgoing: Outgoing
    platform: Platform
    state: PostState
    token: str = ""  # set once claimed: every later update is fenced on it


@dataclass(frozen=True, slots=True)
class PendingPart:
    id: int
    reply: int
    ticket: int
    idx: int
    count: int
    text: str
    in_reply_to: TweetId
    state: PartState
    queued_at: datetime
    attempts: int = 0
    token: str = ""
    media: tuple[ChatFile, ...] = ()  # images to attach (the first part of a reply only)

    @property
    def is_last(self) -> bool:
        """The last part of its chain: once it is sent, the reply is."""
        return self.idx == self.count - 1


@dataclass(frozen=True, slots=True)
class ReplyInfo:
    id: int
    ticket: int
    state: ReplyState
    text: str
    author: ChatUserId
    tweet_ids: tuple[TweetId, ...]
    error: str | None
    parts: tuple[str, ...] = ()  # the tweets' texts, as they go out


@dataclass(frozen=True, slots=True)
class Move:
    """One `move` as recorded: the ticket's `n`th, and the thread it left (None when
    that thread's root had not landed yet)."""

    n: int
    left: ThreadRef | None


@dataclass(frozen=True, slots=True)
class MovedThread:
    """A thread a ticket left by its `move`th move: `department` is the one it left."""

    ticket: Ticket
    department: DepartmentId
    move: int


@dataclass(frozen=True, slots=True)
class PendingRetraction:
    """A `retract` whose tweets are still being deleted."""

    id: int
    reply: int
    ticket: int
    requested_by: ChatUserId
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    detail: str


class UnitOfWork(Protocol):
    """One transaction: everything done through it commits together or not at all.

    It records; what a change means (its audit entry, a ticket's first response, a
    reply being done) is for the handlers to say, in the same transaction.
    """

    now: datetime

    def known_tweets(self, tweet_ids: Sequence[str]) -> set[str]: ...
    def ticket(self, number: int) -> Ticket | None: ...
    def ticket_of_tweet(self, tweet_id: TweetId) -> Ticket | None: ...
    def ticket_of_conversation(self, conversation_id: TweetId) -> Ticket | None: ...
    def ticket_of_thread(self, platform: Platform, channel: str, root: str) -> Ticket | None: ...
    def create_tickets(self, items: Sequence[NewTicket]) -> list[Ticket]: ...
    def add_followup(self, ticket: int, tweet: Tweet) -> None: ...
    def add_edit(self, ticket: int, tweet: Tweet, *, of_question: bool) -> None: ...
    def set_state(self, ticket: int, state: TicketState) -> None: ...
    def set_assignee(self, ticket: int, assignee: ChatUserId) -> None: ...
    def mark_escalated(self, ticket: int) -> bool: ...
    def mark_urgent(self, ticket: int) -> bool: ...
    def mark_escalated_again(self, ticket: int) -> bool: ...
    def escalated_again_due(self, department: str, created_before: datetime) -> list[Ticket]: ...

    def tickets(
        self,
        *,
        open_only: bool = True,
        assignee: str | None = None,
        department: str | None = None,
        limit: int = 20,
    ) -> list[Ticket]: ...

    def open_summary(self, department: str) -> tuple[int, Ticket | None]: ...
    def open_by_department(self) -> dict[str, int]: ...
    # Figures (stats, digests): one department and a window, through an index each.
    def ticket_counts(
        self, department: str, since: datetime, until: datetime
    ) -> tuple[int, int, int]: ...
    def first_responses(self, department: str, since: datetime, until: datetime) -> list[float]: ...
    def oldest_open(self, department: str, limit: int) -> list[Ticket]: ...
    def waiting_since(self, department: str, created_before: datetime) -> int: ...
    def unanswered_before(
        self,
        department: str,
        created_before: datetime,
        *,
        urgent_only: bool = False,
        limit: int = 200,
    ) -> list[Ticket]: ...
    # Moves (`move N DEPT`).
    def move_ticket(
        self,
        number: int,
        expected_moves: int,
        department: str,
        platform: Platform,
        channel: str,
        by: str,
    ) -> Move | None: ...

    def moved_from(self, platform: Platform, channel: str, root: str) -> MovedThread | None: ...
    def unsent_replies(self, ticket: int) -> list[ReplyInfo]: ...
    # On-call overrides (`oncall set` / `oncall clear`).
    def add_override(
        self, department: str, member: ChatUserId, starts: datetime, ends: datetime, by: ChatUserId
    ) -> Override: ...

    def overrides(self, department: str, ending_after: datetime) -> list[Override]: ...
    def clear_overrides(self, department: str, by: ChatUserId) -> list[Override]: ...
    def audit(self, ticket: int | None, actor: str, action: Audit, detail: str = "") -> None: ...
    def audit_all(self, entries: Sequence[tuple[int | None, str, Audit, str]]) -> None: ...
    def enqueue_new(self, posts: Sequence[tuple[Outgoing, Platform]]) -> None: ...
    def audit_log(self, ticket: int) -> list[AuditEntry]: ...

    def enqueue(
        self, out: Outgoing, platform: Platform, in_thread: bool, *, new_key: bool = False
    ) -> bool: ...

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
        media: Sequence[ChatFile] = (),
        *,
        origin: str | None = None,
    ) -> int | None: ...

    def posted(self, key: str) -> MessageId | None: ...

    def roots_unsettled(self, platform: Platform, channel: str) -> bool:
        """Whether a thread root in this channel may have landed without being recorded
        (being sent, or its outcome being looked for)."""
        ...

    def reply(self, reply_id: int) -> ReplyInfo | None: ...
    def reply_of_message(self, platform: Platform, channel: str, message_id: str) -> int | None: ...
    def confirm_reply(self, reply_id: int, user: ChatUserId) -> bool: ...
    def finish_reply(self, reply_id: int, state: ReplyState, error: str | None = None) -> None: ...
    def first_response(self, ticket: int) -> bool: ...
    def part_sent(self, part: PendingPart, tweet_id: TweetId) -> bool: ...
    def part_refused(self, part: PendingPart, reason: str) -> bool: ...
    def cancel_reply(self, reply_id: int) -> bool: ...
    def reply_tweet_ids(self, ticket: int) -> set[str]: ...
    def get(self, key: str) -> str | None: ...
    def put(self, key: str, value: str) -> None: ...
    def counts(self) -> dict[str, int]: ...
    # The search index: which tickets asked the same thing (terms: bot.similarity.terms).
    def index_tickets(self, items: Sequence[tuple[int, Sequence[str]]]) -> None: ...
    def reindex_ticket(self, ticket: int, terms: Sequence[str]) -> None: ...
    def forget_search(self, ticket: int) -> None: ...
    def term_counts(self, terms: Collection[str]) -> dict[str, int]: ...
    def ticket_count(self) -> int: ...

    def search(
        self, weights: Mapping[str, float], *, answered: bool, limit: int, every: bool = False
    ) -> list[tuple[int, tuple[str, ...]]]:
        """Tickets holding any of the terms (the keys; all of them when `every`), best
        first, with all their terms; among the newest `SEARCH_WINDOW` tickets only, so a
        lookup costs the same after a year and a half as after a month."""
        ...

    def latest_answers(self, tickets: Iterable[int]) -> dict[int, str]: ...
    # Saved answers, per department, by normalised name.
    def save_answer(self, answer: SavedAnswer) -> SavedAnswer | None:
        """Keeps `answer`; the one it replaced under that name, if any."""
        ...

    def saved_answer(self, department: str, name: str) -> SavedAnswer | None: ...
    def saved_answers(self, department: str | None = None) -> list[SavedAnswer]: ...
    def forget_answer(self, department: str, name: str) -> SavedAnswer | None: ...
    def reply_of_origin(self, ticket: int, origin: str) -> ReplyInfo | None: ...

    def public_replies(
        self, since: datetime, limit: int, department: str | None = None
    ) -> list[tuple[Ticket, list[list[tuple[str, str]]]]]:
        """Tickets first answered since `since`, newest first, with their public replies:
        each chain as (text, tweet id) of its tweets."""
        ...

    # Retractions (`retract`): a public reply's tweets deleted from X, once.
    def last_public_reply(self, ticket: int) -> int | None: ...
    def add_retraction(self, reply: int, ticket: int, by: ChatUserId) -> int | None: ...
    def due_retractions(self, limit: int = 20) -> list[PendingRetraction]: ...
    def undeleted_parts(self, reply: int) -> list[tuple[int, TweetId]]: ...
    def part_deleted(self, part: int) -> None: ...
    def deleted_tweets(self, reply: int) -> list[TweetId]: ...

    def finish_retraction(
        self, retraction: int, state: RetractState, error: str | None = None
    ) -> bool: ...

    def retraction_retry(self, retraction: int, not_before: datetime) -> None: ...

    # The retention purge (`safety.retention_days`).
    def purge_due(self, closed_before: datetime, limit: int) -> list[tuple[int, str]]: ...
    def purge_tickets(self, tickets: Sequence[tuple[int, str]]) -> None: ...
    def forget_unused_terms(self) -> None: ...

    # Leases (work one instance does at a time) and replay guards.
    def hold_lease(self, name: str, owner: str, ttl: timedelta) -> bool: ...
    def release_lease(self, name: str, owner: str) -> None: ...
    def was_seen(self, scope: str, event_id: str) -> bool: ...
    def first_sight(self, scope: str, event_id: str) -> bool: ...
    def forget_events_before(self, when: datetime) -> None: ...

    # The inbox of incoming events (see Inbox).
    def accept_events(self, source: str, events: Sequence[tuple[str, str]]) -> list[bool]: ...
    def claim_events(self, source: str, limit: int) -> list[InboxEvent]: ...
    def events_done(self, events: Sequence[InboxEvent]) -> None: ...

    def event_retry(
        self, event: InboxEvent, not_before: datetime, error: str, *, give_up: bool = False
    ) -> None: ...

    # The chat outbox: claimed before the side effect, finished after it (fenced).
    def due_lanes(self) -> list[tuple[Platform, str]]: ...

    def due_posts(
        self, limit: int = 500, *, platform: str | None = None, channel: str | None = None
    ) -> list[PendingPost]: ...

    def post_done(self, post: PendingPost, message_id: MessageId) -> bool: ...
    def claim_posts(self, platform: str, channel: str, limit: int) -> list[PendingPost]: ...
    def settle_post(self, post: PendingPost, message_id: MessageId) -> bool: ...
    def unclaim_post(self, post: PendingPost) -> None: ...

    def settle_and_claim(
        self, landed: tuple[PendingPost, MessageId] | None, claim: PendingPost | None
    ) -> tuple[bool, PendingPost | None]: ...

    def post_retry(
        self, post: PendingPost, not_before: datetime, error: str, *, unknown: bool
    ) -> None: ...

    def post_failed(self, post: PendingPost, error: str) -> None: ...
    def expire_claims(self, lease: timedelta) -> int: ...

    # Reply tweets, part by part.
    def due_parts(self, limit: int = 200) -> list[PendingPart]: ...
    def claim_part(self, part: PendingPart) -> PendingPart | None: ...
    def claim_next_parts(self, replies: Sequence[int]) -> list[PendingPart]: ...
    def waiting_replies(self, limit: int = 200) -> list[tuple[int, Ticket]]: ...
    def part_retry(self, part: PendingPart, not_before: datetime, *, unknown: bool) -> None: ...


P = ParamSpec("P")
T = TypeVar("T")


class TicketStore(KeyValue, Protocol):
    """The database. Async code uses it only through `run` (and the KeyValue methods,
    which are units of work of their own)."""

    async def run(
        self, fn: Callable[Concatenate[UnitOfWork, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(tx, *args)` as one transaction on the database's own threads, so the event
        loop never waits on the database. `fn` is plain synchronous code: nothing can be
        awaited inside a transaction, so no network call ever holds one open.

        Raises Conflict (the whole unit rolled back) when a uniqueness constraint said no.
        """
        ...

    async def run_first(
        self, fn: Callable[Concatenate[UnitOfWork, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`run`, ahead of the units waiting in `run`: for what an ack or a reply tweet
        waits on (storing an event, taking an agent's reply, claiming a part to tweet).
        The rest is bookkeeping that can follow a moment later."""
        ...

    def queued_lanes(self) -> set[tuple[Platform, str]]:
        """The (platform, channel) lanes that got chat posts queued since the last call,
        by units of work of this process that committed: delivery starts those lanes
        without a look at the database (a periodic look finds the rest)."""
        ...
