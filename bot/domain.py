"""The bot's own vocabulary: no Slack, Matrix or tweepy types cross into the core."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NewType

from bot.outbox import ThreadMark

TweetId = NewType("TweetId", str)
XUserId = NewType("XUserId", str)
ChannelId = NewType("ChannelId", str)
MessageId = NewType("MessageId", str)  # Slack `ts`, Matrix event id
ChatUserId = NewType("ChatUserId", str)  # Slack `U…`, Matrix `@user:server`
DepartmentId = NewType("DepartmentId", str)

Platform = Literal["slack", "matrix"]


def tweet_url(username: str, tweet_id: str) -> str:
    """A post's address; X also finds it by id alone (`/i/`), as after the retention
    purge forgot the author's name."""
    return f"https://x.com/{username or 'i'}/status/{tweet_id}"


@dataclass(frozen=True, slots=True)
class XUser:
    id: XUserId
    username: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Media:
    """A photo, video or GIF attached to a post, as X's `includes.media` describes it.

    `image` is what to look at (a photo, or a video's preview frame) and `link` what to
    open (the photo, or the video file); both come from X, never from the citizen, whose
    only words here are `alt_text`.
    """

    kind: str  # photo | video | animated_gif
    image: str = ""
    link: str = ""
    alt_text: str = ""
    duration_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Tweet:
    """A post read from X; `replied_to` and `retweeted` come from `referenced_tweets`.

    `text` is the whole text (a long post's `note_tweet`, not the 280-character cut).
    `hashtags` are X's own `entities.hashtags` (None when X sent no entities: then they
    are read from the text). `earlier_versions` are the ids this post replaced by being
    edited (`edit_history_tweet_ids` without its own id), oldest first. `quoted_*` show
    the post it quotes, when X included it.
    """

    id: TweetId
    text: str
    author_id: XUserId
    author_username: str
    created_at: datetime | None = None
    conversation_id: TweetId | None = None
    in_reply_to_user_id: XUserId | None = None
    replied_to: TweetId | None = None
    quoted: TweetId | None = None
    is_retweet: bool = False
    hashtags: tuple[str, ...] | None = None
    media: tuple[Media, ...] = ()
    earlier_versions: tuple[TweetId, ...] = ()
    quoted_username: str | None = None
    quoted_text: str | None = None

    @property
    def url(self) -> str:
        return tweet_url(self.author_username, self.id)


class TicketState(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Audit(enum.StrEnum):
    """What the audit log records a change as (stored: `audit_log.action`)."""

    CREATED = "created"
    CLOSED = "closed"
    REOPENED = "reopened"
    ASSIGNED = "assigned"
    ESCALATED = "escalated"
    REPLY = "reply"  # an agent's reply queued, awaiting confirmation, confirmed, cancelled
    REPLIED = "replied"  # X accepted a whole reply
    REFUSED = "refused"  # X refused a reply
    RETRACTED = "retracted"  # `retract` asked for, then its tweets deleted from X
    PURGED = "purged"  # safety.retention_days took the citizen's text and name
    URGENT = "urgent"  # a follow-up or edit with a `triage.urgent` word made the ticket urgent
    MOVED = "moved"  # `move N DEPT`: another department's channel or room
    ONCALL_SET = "oncall_set"  # an on-call override (no ticket)
    ONCALL_CLEARED = "oncall_cleared"
    SAVED = "saved"  # a saved answer kept or replaced (`save`)
    FORGOTTEN = "forgotten"  # a saved answer deleted (`forget`)


# Who made a change, besides the chat users: the citizen's side on X, and the bot.
ACTOR_X = "x"
ACTOR_BOT = "seva"


@dataclass(frozen=True, slots=True)
class ThreadRef:
    """Where a ticket lives in chat: the root message of its thread."""

    platform: Platform
    channel: ChannelId
    root: MessageId


@dataclass(frozen=True, slots=True)
class ChatFile:
    """A file attached to a chat message, as the platform describes it; the bytes are
    fetched from the platform only when the reply goes out (`ChatPlatform.fetch_file`)."""

    id: str
    name: str
    mimetype: str
    size: int

    def to_json(self) -> dict[str, str | int]:
        return {"id": self.id, "name": self.name, "mimetype": self.mimetype, "size": self.size}

    @staticmethod
    def from_json(data: dict[str, str | int]) -> ChatFile:
        return ChatFile(
            str(data["id"]), str(data["name"]), str(data["mimetype"]), int(data["size"])
        )


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A human's message in a channel or room, as the adapter saw it.

    Adapters drop the bot's own posts, other bots and backlog before this exists;
    `power_level` is only known on Matrix. `edited` marks a person's edit of an earlier
    message (`id` is that message): never tweeted, but the sender may need telling
    that what went out cannot change. `external`: the sender belongs to another
    workspace (Slack Connect), or the adapter could not tell that they do not.
    """

    platform: Platform
    channel: ChannelId
    id: MessageId
    sender: ChatUserId
    text: str
    thread_root: MessageId | None = None
    event_id: str = ""
    power_level: int | None = None
    edited: bool = False
    files: tuple[ChatFile, ...] = ()
    external: bool = False


@dataclass(frozen=True, slots=True)
class ChatAction:
    """A person confirming an `Outgoing.actions` entry: a button (Slack) or a reaction
    (Matrix). `power_level` is only known on Matrix; `external` as on ChatMessage."""

    platform: Platform
    channel: ChannelId
    id: str
    value: str
    user: ChatUserId
    power_level: int | None = None
    external: bool = False


@dataclass(frozen=True, slots=True)
class Shift:
    """Who is on call from `starts` until `ends`: a rotation shift, or the part of it an
    override covers (`override` is then its id and `by` who set it)."""

    member: ChatUserId
    starts: datetime
    ends: datetime | None  # None: an override on a department without a rotation, then nobody
    override: int | None = None
    by: ChatUserId | None = None


@dataclass(frozen=True, slots=True)
class Override:
    """`oncall set`: `member` is on call instead of the rotation from `starts` until
    `ends`; the newest override wins where several overlap."""

    id: int
    department: DepartmentId
    member: ChatUserId
    starts: datetime
    ends: datetime
    by: ChatUserId


# --- Rich text: the core says what a message means; adapters render and escape it.


@dataclass(frozen=True, slots=True)
class Text:
    """Text from anywhere (a citizen's tweet included): always escaped when rendered."""

    text: str
    bold: bool = False


@dataclass(frozen=True, slots=True)
class Mention:
    user: ChatUserId


@dataclass(frozen=True, slots=True)
class Link:
    url: str
    label: str


@dataclass(frozen=True, slots=True)
class Quote:
    """A block quote of untrusted text (the citizen's tweet)."""

    text: str


Segment = Text | Mention | Link | Quote


@dataclass(frozen=True, slots=True)
class Rich:
    segments: tuple[Segment, ...] = ()

    def __add__(self, other: Rich) -> Rich:
        return Rich(self.segments + other.segments)

    @staticmethod
    def of(*parts: Segment | str) -> Rich:
        return Rich(tuple(Text(p) if isinstance(p, str) else p for p in parts))

    def plain(self) -> str:
        """A plain-text rendering, for logs, previews and Matrix `body`."""
        out: list[str] = []
        for s in self.segments:
            match s:
                case Text(text=t):
                    out.append(t)
                case Mention(user=u):
                    out.append(u)
                case Link(url=url, label=label):
                    out.append(f"{label} ({url})" if label and label != url else url)
                case Quote(text=t):
                    out.append("\n".join("> " + line for line in t.splitlines() or [""]))
        return "".join(out)

    def to_json(self) -> list[dict[str, str | bool]]:
        return [_segment_json(s) for s in self.segments]

    @staticmethod
    def from_json(data: list[dict[str, str | bool]]) -> Rich:
        return Rich(tuple(_segment_from_json(d) for d in data))


def _segment_json(s: Segment) -> dict[str, str | bool]:
    match s:
        case Text(text=t, bold=b):
            return {"t": "text", "text": t, "bold": b}
        case Mention(user=u):
            return {"t": "mention", "user": u}
        case Link(url=url, label=label):
            return {"t": "link", "url": url, "label": label}
        case Quote(text=t):
            return {"t": "quote", "text": t}
    raise TypeError(s)


def _segment_from_json(d: dict[str, str | bool]) -> Segment:
    kind = d["t"]
    if kind == "text":
        return Text(str(d["text"]), bool(d.get("bold", False)))
    if kind == "mention":
        return Mention(ChatUserId(str(d["user"])))
    if kind == "link":
        return Link(str(d["url"]), str(d["label"]))
    if kind == "quote":
        return Quote(str(d["text"]))
    raise ValueError(f"unknown segment {kind!r}")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A bot message that must reach chat exactly once.

    `key` is unique per message (built by `bot.outbox`: `root:42`, `followup:<tweet
    id>`); adapters stamp it on the message (Slack metadata, a Matrix content field)
    so a post whose outcome a crash hid can be found again instead of posted twice.
    `is_root` says this post opens its ticket's thread: where it lands is the thread.
    With `mark` set it is no message but that state shown on the thread root (a
    reaction), delivered in the same order and with the same retries as the posts.
    An in-thread post queued with `thread_root` stays in that thread (the one a ticket
    was moved away from); without it, it goes to its ticket's thread, whose root is
    filled in when it is sent.
    """

    key: str
    channel: ChannelId
    body: Rich
    thread_root: MessageId | None = None
    ticket: int | None = None
    tweet_id: TweetId | None = None
    actions: tuple[Action, ...] = field(default=())
    is_root: bool = False
    mark: ThreadMark | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """A button (Slack) or a reaction to confirm (Matrix)."""

    id: str
    label: str
    value: str


@dataclass(frozen=True, slots=True)
class Ticket:
    number: int
    tweet_id: TweetId
    department: DepartmentId
    state: TicketState
    author_id: XUserId
    author_username: str
    text: str
    created_at: datetime
    platform: Platform
    channel: ChannelId
    root: MessageId | None = None
    conversation_id: TweetId | None = None
    assignee: ChatUserId | None = None
    first_response_at: datetime | None = None
    closed_at: datetime | None = None
    escalated_at: datetime | None = None
    reply_to: TweetId | None = None  # the citizen's latest tweet in this ticket
    urgent: bool = False  # a `triage.urgent` word: listed first, escalates sooner
    moves: int = 0  # how often `move` re-routed it; its thread is the latest move's
    escalated_again_at: datetime | None = None  # the second escalation step

    @property
    def thread(self) -> ThreadRef | None:
        if self.root is None:
            return None
        return ThreadRef(self.platform, self.channel, self.root)

    @property
    def url(self) -> str:
        return tweet_url(self.author_username, self.tweet_id)


@dataclass(frozen=True, slots=True)
class SavedAnswer:
    """A department's answer to a common question, kept under a name (`save NAME`)."""

    department: DepartmentId
    name: str
    text: str
    saved_by: ChatUserId
    saved_at: datetime
    ticket: int | None = None  # the ticket whose public reply it was kept from
