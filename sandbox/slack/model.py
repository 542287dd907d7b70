"""The Slack stand-in's records and wire-format helpers: users, channels, messages,
deliveries, ts and cursors, signatures."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"

# Slack keeps retrying an event for a while (immediately, after 1 min, after 5 min); the sandbox
# compresses that so the demo shows recovery within seconds.
DEFAULT_RETRY_DELAYS = (1.0, 5.0, 15.0)
MAX_EVENT_RETRIES = 3
_KEPT_ENVELOPES = 20_000
_KEPT_DELIVERIES = 10_000
_KEPT_TICKETS = 100
_US = 1_000_000


class ApiError(Exception):
    """A Web API failure, reported to the caller as ``{"ok": false, "error": <error>}``."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


# What a fresh install of the app grants: the scopes of slack-app-manifest.yml.
DEFAULT_SCOPES = (
    "channels:history",
    "groups:history",
    "chat:write",
    "commands",
    "reactions:write",
    "users:read",
    "channels:read",
    "groups:read",
    "files:read",
)


class MissingScopeError(ApiError):
    """The token lacks every scope the method accepts: `missing_scope`, with `needed`
    and `provided` in the body."""

    def __init__(self, needed: str, provided: str) -> None:
        super().__init__("missing_scope")
        self.needed = needed
        self.provided = provided


class RateLimitedError(ApiError):
    """Over the per-channel posting rate: HTTP 429 with ``Retry-After`` whole seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("ratelimited")
        self.retry_after = retry_after


@dataclass(slots=True)
class User:
    id: str
    name: str
    real_name: str
    is_bot: bool = False
    # Another workspace's team id: a Slack Connect guest in a shared channel.
    team_id: str | None = None


@dataclass(slots=True)
class UserGroup:
    """A user group (Slack's "subteam", `S…`): `@handle` pages every member."""

    id: str
    handle: str
    name: str
    users: list[str] = field(default_factory=list)
    date_update: int = 0
    updated_by: str | None = None


@dataclass(slots=True, eq=False)
class Message:
    channel: str
    us: int  # the ts as integer microseconds: the sort and index key
    ts: str
    user: str
    text: str
    bot_id: str | None = None
    thread_us: int | None = None  # the root's key, on replies only
    blocks: list[Any] | None = None
    metadata: dict[str, Any] | None = None
    client_msg_id: str | None = None
    reactions: dict[str, list[str]] = field(default_factory=dict)
    replies: list[int] = field(default_factory=list)  # reply keys, oldest first (roots only)
    edited: dict[str, str] | None = None
    subtype: str | None = None  # "file_share" when files came with it
    files: list[str] | None = None  # ids of the files shared with it


@dataclass(slots=True, eq=False)
class Channel:
    id: str
    name: str
    by_us: dict[int, Message] = field(default_factory=dict)  # insertion order is ts order
    top_level: list[int] = field(default_factory=list)  # ascending keys of non-replies
    tokens: float = 0.0
    refilled_at: float | None = None
    is_member: bool = True  # the bot is in it: it gets its events and may post there
    is_im: bool = False  # a person's DM (with Slackbot or another person), never the bot's
    # Who is in it (None: every person in the workspace); the bot's own membership is
    # `is_member`. Slack's client lets only members post or run a command there.
    members: set[str] | None = None
    shared: bool = False  # shared with another workspace (Slack Connect)


@dataclass(slots=True)
class Ephemeral:
    channel: str
    user: str
    text: str
    blocks: list[Any] | None
    ts: str
    thread_ts: str | None = None


@dataclass(slots=True, frozen=True)
class _ResponseTarget:
    channel: str
    user: str
    thread_ts: str | None
    message_ts: str | None  # the message an interaction came from (replace_original)
    created: float = 0.0  # when Slack handed out the URL (the clock's seconds)


# A response_url takes up to 5 posts within 30 minutes (Slack's interactivity docs as
# quoted by several third parties; facts-issue7 section 11).
RESPONSE_URL_USES = 5
RESPONSE_URL_SECONDS = 30 * 60


@dataclass(slots=True, frozen=True)
class Delivery:
    """One HTTP request or Socket Mode envelope the stand-in sent to the bot."""

    kind: str  # "event", "command" or "block_actions"
    event_id: str | None
    retry_num: int
    status: int | None  # None: no answer (timeout or connection failure); 200: socket ack
    # None: 2xx or acked; else http_timeout / http_error / connection_failed (HTTP),
    # timeout / connection_failed (socket)
    reason: str | None
    transport: str = "http"  # or "socket"
    # How long the bot took to answer (HTTP) or ack (socket); None without an answer.
    seconds: float | None = field(default=None, compare=False)

    def json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "event_id": self.event_id,
            "retry_num": self.retry_num,
            "status": self.status,
            "reason": self.reason,
            "transport": self.transport,
            "seconds": self.seconds,
        }


class _SocketGone(Exception):
    """The socket an envelope went out on closed before its ack arrived."""


@dataclass(slots=True, eq=False)
class _Socket:
    """One Socket Mode connection of the bot."""

    number: int
    ws: web.WebSocketResponse
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, message: dict[str, Any]) -> None:
        async with self.lock:
            await self.ws.send_str(json.dumps(message, separators=(",", ":")))


@dataclass(slots=True, frozen=True)
class PostResult:
    ts: str
    event_id: str | None
    status: int | None


@dataclass(slots=True, frozen=True)
class CommandResult:
    status: int | None
    response: Any  # the parsed JSON body, the plain text body, or None when empty


def ts_to_us(ts: str) -> int:
    """Parse a Slack ts ("1732900000.000100", also "1732900000" or "1732900000.5")."""
    seconds, _, fraction = str(ts).strip().partition(".")
    if not seconds.isdigit() or (fraction and not fraction.isdigit()):
        raise ValueError(f"not a Slack ts: {ts!r}")
    return int(seconds) * _US + int((fraction + "000000")[:6])


def us_to_ts(us: int) -> str:
    return f"{us // _US}.{us % _US:06d}"


# Slack's "Formatting text for app surfaces" (docs.slack.dev/messaging/formatting-message-text):
# mentions <@U…>, channels <#C…>, special mentions <!here>, links <https://…|text>, and
# e-mail addresses as <mailto:bob@example.com|Email Bob>.
_CONTROL_SEQUENCE = re.compile(r"<(?:[@#!][^<>\s]+|(?:https?://|mailto:)[^<>\s|]+(?:\|[^<>]*)?)>")


def encode_typed_text(text: str) -> str:
    """Encode what a person typed the way Slack's client does before it reaches the API.

    ``&``, ``<`` and ``>`` become entities; mentions and links already in Slack syntax
    (``<@U…>``, ``<#C…>``, ``<!here>``, ``<https://…|…>``, an e-mail address as
    ``<mailto:…|…>``) stay live, as if autocompleted.
    """
    out: list[str] = []
    last = 0
    for m in _CONTROL_SEQUENCE.finditer(text):
        out.append(_escape(text[last : m.start()]))
        out.append(m.group(0))
        last = m.end()
    out.append(_escape(text[last:]))
    return "".join(out)


_RICH_TOKEN = re.compile(
    r"<([@#!][^<>\s]+|(?:https?://|mailto:)[^<>\s|]+(?:\|[^<>]*)?)>|:([a-z0-9_+\-]+):"
)
_STYLED = re.compile(
    r"(?<![\w*])\*(?=\S)(?P<bold>[^*\n]*?\S)\*(?![\w*])"
    r"|(?<![\w_])_(?=\S)(?P<italic>[^_\n]*?\S)_(?![\w_])"
    r"|(?<![\w~])~(?=\S)(?P<strike>[^~\n]*?\S)~(?![\w~])"
    r"|`(?P<code>[^`\n]+)`"
)


def rich_text_of(encoded: str) -> list[dict[str, Any]]:
    """The `rich_text` block Slack's client attaches to what a person typed, built from
    the encoded text: user, channel, broadcast, usergroup, link and emoji elements
    between text runs (block elements reference, docs.slack.dev; the capture golden
    message_rich_text.json). Emoji carry `unicode` when the `emoji` table knows them."""
    import emoji  # the sandbox's own copy of a maintained table

    elements: list[dict[str, Any]] = []
    last = 0

    def plain(run: str) -> str:
        return run.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")

    def text(run: str) -> None:
        """Text runs, emphasis as `style` (the client sends no asterisks in rich_text)."""
        at = 0
        for m in _STYLED.finditer(run):
            if m.start() > at:
                elements.append({"type": "text", "text": plain(run[at : m.start()])})
            style = m.lastgroup or "bold"
            elements.append({"type": "text", "text": plain(m.group(style)), "style": {style: True}})
            at = m.end()
        if at < len(run):
            elements.append({"type": "text", "text": plain(run[at:])})

    for m in _RICH_TOKEN.finditer(encoded):
        text(encoded[last : m.start()])
        last = m.end()
        if m.group(2) is not None:
            shown = emoji.emojize(f":{m.group(2)}:", language="alias")
            item: dict[str, Any] = {"type": "emoji", "name": m.group(2)}
            if not shown.startswith(":"):
                item["unicode"] = "-".join(f"{ord(c):x}" for c in shown if ord(c) != 0xFE0F)
            elements.append(item)
            continue
        target, _, label = m.group(1).partition("|")
        if target.startswith("@"):
            elements.append({"type": "user", "user_id": target[1:]})
        elif target.startswith("#"):
            elements.append({"type": "channel", "channel_id": target[1:]})
        elif target.startswith("!subteam^"):
            elements.append({"type": "usergroup", "usergroup_id": target[9:]})
        elif target.startswith("!"):
            elements.append({"type": "broadcast", "range": target[1:]})
        else:
            link: dict[str, Any] = {"type": "link", "url": target}
            if label:
                link["text"] = label
            elements.append(link)
    text(encoded[last:])
    section = {"type": "rich_text_section", "elements": elements}
    return [{"type": "rich_text", "block_id": "sbx", "elements": [section]}]


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def sign(signing_secret: str, timestamp: str, body: bytes) -> str:
    """Slack's request signature: ``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes")


def _as_json(value: Any, error: str) -> Any:
    """Blocks and metadata come as JSON values in JSON bodies and as JSON strings in forms."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ApiError(error) from None
    return value


def _as_int(value: Any, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ApiError("invalid_arguments") from None
    return default if number <= 0 else max(low, min(high, number))


def _encode_cursor(key: int) -> str:
    return base64.b64encode(f"next_ts:{key}".encode()).decode()


def _decode_cursor(cursor: Any) -> int | None:
    if not cursor:
        return None
    try:
        kind, _, value = base64.b64decode(str(cursor)).decode().partition(":")
        if kind != "next_ts":
            raise ValueError(kind)
        return int(value)
    except ValueError:
        raise ApiError("invalid_cursor") from None
