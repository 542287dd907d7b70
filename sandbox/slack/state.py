"""A local stand-in of the Slack Web API and of Slack's event delivery, in Slack's wire format.

The bot talks to it with the real ``slack_sdk`` client and receives signed HTTP requests from it on
its ``POST /slack/events``, exactly as from Slack, so the demo and the end-to-end tests exercise the
same code paths as production. Socket Mode works as on Slack too: with an app-level token
(``app_token="xapp-…"``) the bot calls ``apps.connections.open``, connects to the WebSocket URL it
gets, and then receives events, slash commands and interactions as envelopes it must ack; while a
socket is connected nothing goes to ``events_url``. Mount it under ``/slack``::

    state = SlackState(token, secret, "http://127.0.0.1:3000/slack/events",
                       channels=[("C0HEALTH", "health")], users=[("U0AGENT1", "asha", "Asha Rao")])
    root = web.Application()
    root.add_subapp("/slack", build_slack_app(state))
    # Web API: http://HOST:PORT/slack/api/<method>; control API: http://HOST:PORT/slack/sandbox/...
    # Socket Mode: ws://HOST:PORT/slack/socket/<ticket>, as handed out by apps.connections.open
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import time
import uuid
from bisect import bisect_left
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

log = logging.getLogger("seva." + __name__)

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


@dataclass(slots=True, eq=False)
class Channel:
    id: str
    name: str
    by_us: dict[int, Message] = field(default_factory=dict)  # insertion order is ts order
    top_level: list[int] = field(default_factory=list)  # ascending keys of non-replies
    tokens: float = 0.0
    refilled_at: float | None = None


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


_CONTROL_SEQUENCE = re.compile(r"<(?:[@#!][^<>\s]+|https?://[^<>\s]+)>")


def encode_typed_text(text: str) -> str:
    """Encode what a person typed the way Slack's client does before it reaches the API.

    ``&``, ``<`` and ``>`` become entities; mentions and links already in Slack syntax
    (``<@U…>``, ``<#C…>``, ``<!here>``, ``<https://…|…>``) stay live, as if autocompleted.
    """
    out: list[str] = []
    last = 0
    for m in _CONTROL_SEQUENCE.finditer(text):
        out.append(_escape(text[last : m.start()]))
        out.append(m.group(0))
        last = m.end()
    out.append(_escape(text[last:]))
    return "".join(out)


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


class SlackState:
    """The workspace: channels, users, messages, ephemerals and the deliveries to the bot.

    All Web API calls are synchronous and cheap (an index by channel and ts); deliveries to the
    bot are asynchronous. ``clock`` (seconds since the epoch) drives message ts and the rate
    limiter, so tests can move time without sleeping; signature timestamps always use the real
    clock because the receiving bot checks them against its own.
    """

    def __init__(
        self,
        bot_token: str,
        signing_secret: str,
        events_url: str | None = None,
        channels: Iterable[tuple[str, str]] = (),
        users: Iterable[tuple[str, str, str]] = (),
        *,
        team_id: str = "T0SEVA",
        team_name: str = "Seva Sandbox",
        bot_user_id: str = "UBOTSEVA",
        bot_id: str = "BSEVA",
        app_id: str = "A0SEVA",
        bot_name: str = "seva",
        verification_token: str = "sandbox-verification-token",
        rate_limit_per_channel: float = 1.0,
        rate_limit_burst: int = 3,
        clock: Callable[[], float] = time.time,
        delivery_timeout: float = 3.0,
        retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS,
        public_base_url: str | None = None,
        app_token: str | None = None,
    ) -> None:
        self.bot_token = bot_token
        # The app-level token (xapp-…) that may call apps.connections.open; None: no Socket Mode.
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.events_url = events_url
        self.team_id = team_id
        self.team_name = team_name
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.bot_name = bot_name
        self.verification_token = verification_token
        self.rate_limit_per_channel = rate_limit_per_channel
        self.rate_limit_burst = rate_limit_burst
        self.clock = clock
        self.delivery_timeout = delivery_timeout
        self.retry_delays = retry_delays
        # The subapp's own root URL as the bot reaches it, e.g. "http://127.0.0.1:8000/slack";
        # needed for response_url. Learned from the first request when left None.
        self.public_base_url = public_base_url

        self.channels: dict[str, Channel] = {}
        self._channel_names: dict[str, str] = {}
        for channel_id, name in channels:
            self.add_channel(channel_id, name)
        self.users: dict[str, User] = {}
        for user_id, name, real_name in users:
            self.users[user_id] = User(user_id, name, real_name)
        self._bot_user = User(bot_user_id, bot_name, bot_name.capitalize(), is_bot=True)
        self.ephemeral: list[Ephemeral] = []
        self.deliveries: deque[Delivery] = deque(maxlen=_KEPT_DELIVERIES)

        self._last_us = 0
        self._instance = secrets.token_hex(3).upper()  # event ids stay unique across restarts
        self._counter = 0
        self._envelopes: dict[str, bytes] = {}
        self._response_targets: dict[str, _ResponseTarget] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._background_slots = asyncio.Semaphore(16)
        self._tickets: dict[str, None] = {}  # unused Socket Mode tickets, oldest first
        self._sockets: list[_Socket] = []  # connected, oldest first; the newest gets envelopes
        self._socket_count = 0
        self._socket_used = False  # once the bot used Socket Mode, retries wait for it to return
        self._pending: dict[str, tuple[_Socket, asyncio.Future[dict[str, Any]]]] = {}
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "api.test": lambda args: {"args": args},
            "apps.connections.open": self._apps_connections_open,
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "conversations.info": self._conversations_info,
            "conversations.members": self._conversations_members,
            "users.info": self._users_info,
        }

    # ------------------------------------------------------------------ set-up and lookups

    def add_channel(self, channel_id: str, name: str) -> None:
        self.channels[channel_id] = Channel(channel_id, name)
        self._channel_names[name] = channel_id

    def add_user(self, user_id: str, name: str, real_name: str) -> None:
        self.users[user_id] = User(user_id, name, real_name)

    def channel(self, ref: Any) -> Channel:
        """A channel by id, or by name as chat.postMessage also accepts ("#health", "health")."""
        key = str(ref or "")
        found = self.channels.get(key)
        if found is None:
            channel_id = self._channel_names.get(key.removeprefix("#"))
            found = self.channels.get(channel_id) if channel_id else None
        if found is None:
            raise ApiError("channel_not_found")
        return found

    def user(self, user_id: Any) -> User:
        if user_id == self.bot_user_id:
            return self._bot_user
        found = self.users.get(str(user_id or ""))
        if found is None:
            raise ApiError("user_not_found")
        return found

    def message(self, channel: Any, ts: Any) -> Message:
        chan = self.channel(channel)
        try:
            found = chan.by_us.get(ts_to_us(str(ts)))
        except ValueError:
            found = None
        if found is None:
            raise ApiError("message_not_found")
        return found

    # ------------------------------------------------------------------ the Web API

    def check_token(self, authorization: str | None, token: Any = None, method: str = "") -> None:
        """The bot token for every method, except the app token for ``apps.connections.open``."""
        supplied = token
        if authorization and authorization.lower().startswith("bearer "):
            supplied = authorization[7:].strip()
        if not supplied:
            raise ApiError("not_authed")
        supplied = str(supplied)
        is_bot = hmac.compare_digest(supplied, self.bot_token)
        is_app = self.app_token is not None and hmac.compare_digest(supplied, self.app_token)
        wanted, other = (is_app, is_bot) if method == "apps.connections.open" else (is_bot, is_app)
        if wanted:
            return
        raise ApiError("not_allowed_token_type" if other else "invalid_auth")

    def call(self, method: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Run one Web API method (token already checked); raises ApiError / RateLimitedError."""
        handler = self._methods.get(method)
        if handler is None:
            raise ApiError("unknown_method")
        return {"ok": True, **handler(dict(args))}

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        """A one-time WebSocket URL on this server (the token was checked to be the app token)."""
        base = self.public_base_url
        if base is None:
            raise RuntimeError("SlackState.public_base_url is unknown: set it, or make a request")
        ticket = secrets.token_urlsafe(16)
        self._tickets[ticket] = None
        if len(self._tickets) > _KEPT_TICKETS:
            del self._tickets[next(iter(self._tickets))]
        scheme, sep, rest = base.rstrip("/").partition("://")
        ws_base = ("wss" if scheme == "https" else "ws") + sep + rest
        return {"url": f"{ws_base}/socket/{ticket}"}

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{self.team_name.lower().replace(' ', '-')}.slack.com/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self.channel(args.get("channel"))
        text = str(args.get("text") or "")
        blocks = _as_json(args.get("blocks"), "invalid_blocks")
        if blocks is not None and not isinstance(blocks, list):
            raise ApiError("invalid_blocks")
        if not text and not blocks:
            raise ApiError("no_text")
        metadata = self._metadata_arg(args.get("metadata"))
        root = self._thread_root(chan, args.get("thread_ts"))
        self._take_token(chan)
        msg = self._add_message(
            chan, self.bot_user_id, text, bot=True, root=root, blocks=blocks, metadata=metadata
        )
        self._deliver_in_background(self._message_event(msg))
        return {"channel": chan.id, "ts": msg.ts, "message": self._render(msg, metadata=True)}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self.message(args.get("channel"), args.get("ts"))
        if msg.bot_id != self.bot_id:
            raise ApiError("cant_update_message")
        text = args.get("text")
        blocks = _as_json(args.get("blocks"), "invalid_blocks")
        metadata = self._metadata_arg(args.get("metadata"))
        if text is None and blocks is None:
            raise ApiError("no_text")
        event = self._edit(
            msg,
            self.bot_user_id,
            str(text) if text is not None else None,
            blocks=blocks,
            metadata=metadata,
        )
        self._deliver_in_background(event)
        return {
            "channel": msg.channel,
            "ts": msg.ts,
            "text": msg.text,
            "message": self._render(msg, metadata=True),
        }

    def _chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        msg = self.message(args.get("channel"), args.get("ts"))
        if msg.bot_id != self.bot_id:
            raise ApiError("cant_delete_message")
        self._deliver_in_background(self._delete(msg))
        return {"channel": msg.channel, "ts": msg.ts}

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self.channel(args.get("channel"))
        user = self.user(args.get("user"))
        if user.is_bot:
            raise ApiError("user_not_in_channel")
        text = str(args.get("text") or "")
        blocks = _as_json(args.get("blocks"), "invalid_blocks")
        if not text and not blocks:
            raise ApiError("no_text")
        thread_ts = args.get("thread_ts") or None
        note = self._add_ephemeral(chan.id, user.id, text, blocks, thread_ts)
        return {"message_ts": note.ts}

    def _reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        msg, name = self._reaction_target(args)
        users = msg.reactions.setdefault(name, [])
        if self.bot_user_id in users:
            raise ApiError("already_reacted")
        users.append(self.bot_user_id)
        return {}

    def _reactions_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        msg, name = self._reaction_target(args)
        users = msg.reactions.get(name, [])
        if self.bot_user_id not in users:
            raise ApiError("no_reaction")
        users.remove(self.bot_user_id)
        if not users:
            del msg.reactions[name]
        return {}

    def _reaction_target(self, args: dict[str, Any]) -> tuple[Message, str]:
        name = str(args.get("name") or "").strip(":")
        if not name or any(c.isspace() for c in name):
            raise ApiError("invalid_name")
        if not args.get("channel") or not (args.get("timestamp") or args.get("ts")):
            raise ApiError("no_item_specified")
        return self.message(args["channel"], args.get("timestamp") or args.get("ts")), name

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self.channel(args.get("channel"))
        limit = _as_int(args.get("limit"), 100, 1, 999)
        with_metadata = _as_bool(args.get("include_all_metadata", False))
        low, high = self._bounds(args)
        cursor = _decode_cursor(args.get("cursor"))
        if cursor is not None:
            high = min(high, cursor + 1)
        keys = chan.top_level
        start, end = bisect_left(keys, low), bisect_left(keys, high)
        first = max(start, end - limit)
        page = [self._render(chan.by_us[k], metadata=with_metadata) for k in keys[first:end]]
        page.reverse()
        has_more = first > start
        return {
            "messages": page,
            "has_more": has_more,
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
            "response_metadata": {
                "next_cursor": _encode_cursor(keys[first - 1]) if has_more else ""
            },
        }

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self.channel(args.get("channel"))
        try:
            msg = self.message(chan.id, args.get("ts"))
        except ApiError:
            raise ApiError("thread_not_found") from None
        root = chan.by_us[msg.thread_us] if msg.thread_us is not None else msg
        limit = _as_int(args.get("limit"), 1000, 1, 1000)
        with_metadata = _as_bool(args.get("include_all_metadata", False))
        low, high = self._bounds(args)
        cursor = _decode_cursor(args.get("cursor"))
        keys = root.replies
        start = bisect_left(keys, low if cursor is None else max(low, cursor))
        end = bisect_left(keys, high)
        page: list[dict[str, Any]] = []
        if cursor is None:
            page.append(self._render(root, metadata=with_metadata))
        stop = min(end, start + max(0, limit - len(page)))
        page.extend(self._render(chan.by_us[k], metadata=with_metadata) for k in keys[start:stop])
        has_more = stop < end
        return {
            "messages": page,
            "has_more": has_more,
            "response_metadata": {"next_cursor": _encode_cursor(keys[stop]) if has_more else ""},
        }

    def _bounds(self, args: dict[str, Any]) -> tuple[int, int]:
        """Half-open key range [low, high) from oldest/latest/inclusive."""
        inclusive = _as_bool(args.get("inclusive", False))
        try:
            low = ts_to_us(args["oldest"]) + (0 if inclusive else 1) if args.get("oldest") else 0
            high = (
                ts_to_us(args["latest"]) + (1 if inclusive else 0)
                if args.get("latest")
                else 1 << 62
            )
        except ValueError:
            raise ApiError("invalid_ts_latest") from None
        return low, high

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        chan = self.channel(args.get("channel"))
        return {
            "channel": {
                "id": chan.id,
                "name": chan.name,
                "is_channel": True,
                "is_group": False,
                "is_im": False,
                "is_private": False,
                "is_archived": False,
                "is_general": False,
                "is_member": True,
                "created": 1700000000,
                "creator": next(iter(self.users), self.bot_user_id),
                "name_normalized": chan.name,
                "num_members": len(self.users) + 1,
                "context_team_id": self.team_id,
            }
        }

    def _conversations_members(self, args: dict[str, Any]) -> dict[str, Any]:
        self.channel(args.get("channel"))
        members = [*self.users, self.bot_user_id]
        limit = _as_int(args.get("limit"), 100, 1, 1000)
        start = 0
        if args.get("cursor"):
            try:
                start = int(base64.b64decode(str(args["cursor"])).decode().removeprefix("offset:"))
            except ValueError:
                raise ApiError("invalid_cursor") from None
        end = start + limit
        more = end < len(members)
        cursor = base64.b64encode(f"offset:{end}".encode()).decode() if more else ""
        return {"members": members[start:end], "response_metadata": {"next_cursor": cursor}}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.user(args.get("user"))
        profile: dict[str, Any] = {
            "real_name": user.real_name,
            "display_name": user.name,
            "team": self.team_id,
        }
        if user.is_bot:
            profile["bot_id"] = self.bot_id
        return {
            "user": {
                "id": user.id,
                "team_id": self.team_id,
                "name": user.name,
                "real_name": user.real_name,
                "deleted": False,
                "is_bot": user.is_bot,
                "is_admin": False,
                "tz": "Asia/Kolkata",
                "tz_offset": 19800,
                "profile": profile,
            }
        }

    # ------------------------------------------------------------------ messages

    def _new_us(self) -> int:
        us = max(int(self.clock() * _US), self._last_us + 1)
        self._last_us = us
        return us

    def _take_token(self, chan: Channel) -> None:
        """A token bucket per channel: ``rate_limit_per_channel``/s, ``rate_limit_burst`` deep."""
        rate = self.rate_limit_per_channel
        if rate <= 0:
            return
        now = self.clock()
        burst = max(1.0, float(self.rate_limit_burst))
        if chan.refilled_at is None:
            chan.tokens = burst
        else:
            chan.tokens = min(burst, chan.tokens + max(0.0, now - chan.refilled_at) * rate)
        chan.refilled_at = now
        if chan.tokens < 1.0:
            raise RateLimitedError(max(1, math.ceil((1.0 - chan.tokens) / rate)))
        chan.tokens -= 1.0

    def _metadata_arg(self, value: Any) -> dict[str, Any] | None:
        metadata = _as_json(value, "invalid_metadata_format")
        if metadata is None:
            return None
        if (
            not isinstance(metadata, dict)
            or not isinstance(metadata.get("event_type"), str)
            or not isinstance(metadata.get("event_payload", {}), dict)
        ):
            raise ApiError("invalid_metadata_format")
        return {
            "event_type": metadata["event_type"],
            "event_payload": metadata.get("event_payload", {}),
        }

    def _thread_root(self, chan: Channel, thread_ts: Any) -> Message | None:
        if not thread_ts:
            return None
        try:
            found = chan.by_us.get(ts_to_us(str(thread_ts)))
        except ValueError:
            found = None
        if found is None:
            raise ApiError("thread_not_found")
        return chan.by_us[found.thread_us] if found.thread_us is not None else found

    def _add_message(
        self,
        chan: Channel,
        user: str,
        text: str,
        *,
        bot: bool,
        root: Message | None = None,
        blocks: list[Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Message:
        us = self._new_us()
        msg = Message(
            channel=chan.id,
            us=us,
            ts=us_to_ts(us),
            user=user,
            text=text,
            bot_id=self.bot_id if bot else None,
            thread_us=root.us if root is not None else None,
            blocks=blocks,
            metadata=metadata,
            client_msg_id=None if bot else str(uuid.uuid4()),
        )
        chan.by_us[us] = msg
        if root is None:
            chan.top_level.append(us)
        else:
            root.replies.append(us)
        return msg

    def _delete(self, msg: Message) -> dict[str, Any]:
        """Remove a message (a root takes its replies along); returns the message_deleted event."""
        previous = self._render(msg, metadata=False)
        chan = self.channels[msg.channel]
        chan.by_us.pop(msg.us, None)
        if msg.thread_us is None:
            keys = chan.top_level
            for reply in msg.replies:
                chan.by_us.pop(reply, None)
        else:
            root = chan.by_us.get(msg.thread_us)
            keys = root.replies if root is not None else []
        i = bisect_left(keys, msg.us)
        if i < len(keys) and keys[i] == msg.us:
            del keys[i]
        event_ts = us_to_ts(self._new_us())
        return {
            "type": "message",
            "subtype": "message_deleted",
            "hidden": True,
            "channel": msg.channel,
            "deleted_ts": msg.ts,
            "previous_message": previous,
            "ts": event_ts,
            "event_ts": event_ts,
            "channel_type": "channel",
        }

    def _edit(
        self,
        msg: Message,
        editor: str,
        text: str | None,
        *,
        blocks: list[Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Apply an edit and return the ``message_changed`` event Slack would send for it."""
        previous = self._render(msg, metadata=False)
        event_us = self._new_us()
        if text is not None:
            msg.text = text
        if blocks is not None:
            msg.blocks = blocks
        if metadata is not None:
            msg.metadata = metadata
        msg.edited = {"user": editor, "ts": us_to_ts(event_us)}
        return {
            "type": "message",
            "subtype": "message_changed",
            "hidden": True,
            "channel": msg.channel,
            "message": self._render(msg, metadata=False),
            "previous_message": previous,
            "ts": us_to_ts(event_us),
            "event_ts": us_to_ts(event_us),
            "channel_type": "channel",
        }

    def _add_ephemeral(
        self,
        channel: str,
        user: str,
        text: str,
        blocks: list[Any] | None = None,
        thread_ts: str | None = None,
    ) -> Ephemeral:
        note = Ephemeral(channel, user, text, blocks, us_to_ts(self._new_us()), thread_ts)
        self.ephemeral.append(note)
        return note

    def _render(self, msg: Message, *, metadata: bool) -> dict[str, Any]:
        """A message as conversations.history / replies and events show it."""
        out: dict[str, Any] = {
            "type": "message",
            "user": msg.user,
            "text": msg.text,
            "ts": msg.ts,
            "team": self.team_id,
        }
        if msg.bot_id is not None:
            out["bot_id"] = msg.bot_id
            out["app_id"] = self.app_id
            out["bot_profile"] = {
                "id": msg.bot_id,
                "app_id": self.app_id,
                "name": self.bot_name,
                "deleted": False,
                "team_id": self.team_id,
            }
        if msg.client_msg_id is not None:
            out["client_msg_id"] = msg.client_msg_id
        if msg.blocks is not None:
            out["blocks"] = msg.blocks
        if msg.edited is not None:
            out["edited"] = dict(msg.edited)
        if msg.thread_us is not None:
            root = self.channels[msg.channel].by_us.get(msg.thread_us)
            out["thread_ts"] = us_to_ts(msg.thread_us)
            if root is not None:
                out["parent_user_id"] = root.user
        elif msg.replies:
            chan = self.channels[msg.channel]
            reply_users = list(dict.fromkeys(chan.by_us[k].user for k in msg.replies))
            out["thread_ts"] = msg.ts
            out["reply_count"] = len(msg.replies)
            out["reply_users_count"] = len(reply_users)
            out["latest_reply"] = us_to_ts(msg.replies[-1])
            out["reply_users"] = reply_users
            out["is_locked"] = False
            out["subscribed"] = False
        if msg.reactions:
            out["reactions"] = [
                {"name": name, "users": list(users), "count": len(users)}
                for name, users in msg.reactions.items()
            ]
        if metadata and msg.metadata is not None:
            out["metadata"] = dict(msg.metadata)
        return out

    def _message_event(self, msg: Message) -> dict[str, Any]:
        event = self._render(msg, metadata=False)
        event.pop("reactions", None)
        event["channel"] = msg.channel
        event["event_ts"] = msg.ts
        event["channel_type"] = "channel"
        return event

    # ------------------------------------------------------------------ people (control API)

    async def post_as_user(
        self, user: str, channel: str, text: str, thread_ts: str | None = None, *, raw: bool = False
    ) -> PostResult:
        """A person posts; waits for the bot's answer to the first delivery (retries run on)."""
        person = self._person(user)
        chan = self.channel(channel)
        root = self._thread_root(chan, thread_ts)
        typed = text if raw else encode_typed_text(text)
        msg = self._add_message(chan, person.id, typed, bot=False, root=root)
        event_id, status = await self._deliver_event(self._message_event(msg))
        return PostResult(msg.ts, event_id, status)

    async def edit_as_user(
        self, user: str, channel: str, ts: str, text: str, *, raw: bool = False
    ) -> PostResult:
        person = self._person(user)
        msg = self.message(channel, ts)
        if msg.user != person.id:
            raise ApiError("cant_update_message")
        event = self._edit(msg, person.id, text if raw else encode_typed_text(text))
        event_id, status = await self._deliver_event(event)
        return PostResult(msg.ts, event_id, status)

    async def run_command(
        self, user: str, channel: str, text: str = "", command: str = "/ticket"
    ) -> CommandResult:
        """A person runs a slash command; what the bot answers is shown to them as Slack would."""
        person = self._person(user)
        chan = self.channel(channel)
        command = command if command.startswith("/") else "/" + command
        target = _ResponseTarget(chan.id, person.id, None, None)
        form = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "team_domain": self.team_name.lower().replace(" ", "-"),
            "channel_id": chan.id,
            "channel_name": chan.name,
            "user_id": person.id,
            "user_name": person.name,
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": self._new_response_url(target),
            "trigger_id": self._trigger_id(),
        }
        if self._sockets:
            return await self._run_command_on_socket(form, target)
        status, body, reason = await self._send(urlencode(form).encode(), FORM_TYPE, "command")
        if reason == "http_timeout":
            self._add_ephemeral(
                chan.id, person.id, f'{command} failed with the error "operation_timeout"'
            )
            return CommandResult(status, None)
        if reason is not None:
            self._add_ephemeral(
                chan.id, person.id, f'{command} failed with the error "dispatch_failed"'
            )
            return CommandResult(status, body or None)
        response: Any = None
        if body.strip():
            try:
                response = json.loads(body)
            except ValueError:
                response = body
            self.respond(target, response)
        return CommandResult(status, response)

    async def _run_command_on_socket(
        self, form: dict[str, str], target: _ResponseTarget
    ) -> CommandResult:
        """A ``slash_commands`` envelope; the ack's payload is the answer the person sees."""
        status, ack, reason = await self._send_socket(
            "slash_commands", dict(form), "command", accepts_response_payload=True
        )
        if reason is not None:
            error = "operation_timeout" if reason == "timeout" else "dispatch_failed"
            self._add_ephemeral(
                target.channel, target.user, f'{form["command"]} failed with the error "{error}"'
            )
            return CommandResult(status, None)
        response = (ack or {}).get("payload") or None
        if response is not None:
            self.respond(target, response)
        return CommandResult(status, response)

    async def click_action(
        self,
        user: str,
        channel: str,
        message_ts: str,
        action_id: str,
        value: str | None = None,
    ) -> int | None:
        """A person clicks a button in a message; returns the bot's HTTP status."""
        person = self._person(user)
        msg = self.message(channel, message_ts)
        chan = self.channels[msg.channel]
        block_id, element = self._find_action(msg, action_id)
        thread_ts = us_to_ts(msg.thread_us) if msg.thread_us is not None else None
        target = _ResponseTarget(chan.id, person.id, thread_ts, msg.ts)
        action: dict[str, Any] = {
            "action_id": action_id,
            "block_id": block_id,
            "text": element.get("text", {"type": "plain_text", "text": action_id, "emoji": True}),
            "value": value if value is not None else element.get("value"),
            "type": element.get("type", "button"),
            "action_ts": us_to_ts(self._new_us()),
        }
        container: dict[str, Any] = {
            "type": "message",
            "message_ts": msg.ts,
            "channel_id": chan.id,
            "is_ephemeral": False,
        }
        if thread_ts is not None:
            container["thread_ts"] = thread_ts
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {
                "id": person.id,
                "username": person.name,
                "name": person.name,
                "team_id": self.team_id,
            },
            "api_app_id": self.app_id,
            "token": self.verification_token,
            "container": container,
            "trigger_id": self._trigger_id(),
            "team": {"id": self.team_id, "domain": self.team_name.lower().replace(" ", "-")},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": chan.id, "name": chan.name},
            "message": self._render(msg, metadata=False),
            "state": {"values": {}},
            "response_url": self._new_response_url(target),
            "actions": [action],
        }
        if self._sockets:
            status, _, _ = await self._send_socket("interactive", payload, "block_actions")
            return status
        body = urlencode({"payload": json.dumps(payload)}).encode()
        status, _, _ = await self._send(body, FORM_TYPE, "block_actions")
        return status

    async def redeliver(self, event_id: str, retry_reason: str = "http_timeout") -> int | None:
        """Send an already delivered envelope again, byte for byte, as Slack's retry 1 would."""
        body = self._envelopes.get(event_id)
        if body is None:
            raise ApiError("event_not_found")
        status, _ = await self._dispatch_event(event_id, body, 1, retry_reason)
        return status

    def respond(self, target: _ResponseTarget, response: Any) -> None:
        """Show what the bot sent to a response_url (or as a command's ack body)."""
        if isinstance(response, str):
            self._add_ephemeral(target.channel, target.user, response, None, target.thread_ts)
            return
        if not isinstance(response, dict):
            return
        text = str(response.get("text") or "")
        blocks = response.get("blocks") if isinstance(response.get("blocks"), list) else None
        if target.message_ts is not None and _as_bool(response.get("delete_original", False)):
            with contextlib.suppress(ApiError):
                msg = self.message(target.channel, target.message_ts)
                self._deliver_in_background(self._delete(msg))
            return
        if target.message_ts is not None and _as_bool(response.get("replace_original", False)):
            try:
                msg = self.message(target.channel, target.message_ts)
            except ApiError:
                return
            if msg.bot_id is not None:
                self._deliver_in_background(self._edit(msg, self.bot_user_id, text, blocks=blocks))
            return
        if not text and not blocks:
            return
        if response.get("response_type") == "in_channel":
            chan = self.channels[target.channel]
            root = self._thread_root(chan, target.thread_ts) if target.thread_ts else None
            msg = self._add_message(
                chan, self.bot_user_id, text, bot=True, root=root, blocks=blocks
            )
            self._deliver_in_background(self._message_event(msg))
            return
        self._add_ephemeral(target.channel, target.user, text, blocks, target.thread_ts)

    def response_target(self, response_id: str) -> _ResponseTarget | None:
        return self._response_targets.get(response_id)

    def snapshot(self) -> dict[str, Any]:
        """What a person would see: every channel's messages oldest first, replies included."""
        return {
            "team": {"id": self.team_id, "name": self.team_name},
            "bot_user_id": self.bot_user_id,
            "socket_connections": len(self._sockets),
            "socket_connections_opened": self._socket_count,
            "channels": [
                {
                    "id": chan.id,
                    "name": chan.name,
                    "messages": [self._snapshot_message(m) for m in chan.by_us.values()],
                }
                for chan in self.channels.values()
            ],
            "ephemeral": [
                {
                    "channel": e.channel,
                    "user": e.user,
                    "text": e.text,
                    "blocks": e.blocks,
                    "ts": e.ts,
                    "thread_ts": e.thread_ts,
                }
                for e in self.ephemeral
            ],
            "users": [
                {"id": u.id, "name": u.name, "real_name": u.real_name, "is_bot": u.is_bot}
                for u in self.users.values()
            ],
        }

    def _snapshot_message(self, msg: Message) -> dict[str, Any]:
        return {
            "ts": msg.ts,
            "user": msg.user,
            "bot_id": msg.bot_id,
            "text": msg.text,
            "thread_ts": us_to_ts(msg.thread_us) if msg.thread_us is not None else None,
            "reply_count": len(msg.replies),
            "metadata": msg.metadata,
            "blocks": msg.blocks,
            "reactions": [
                {"name": name, "users": list(users), "count": len(users)}
                for name, users in msg.reactions.items()
            ],
            "edited": dict(msg.edited) if msg.edited else None,
        }

    def _person(self, user_id: str) -> User:
        person = self.user(user_id)
        if person.is_bot:
            raise ApiError("user_not_found")
        return person

    def _find_action(self, msg: Message, action_id: str) -> tuple[str, dict[str, Any]]:
        for block in msg.blocks or []:
            if not isinstance(block, dict):
                continue
            elements = block.get("elements") or []
            accessory = block.get("accessory")
            if isinstance(accessory, dict):
                elements = [*elements, accessory]
            for element in elements:
                if isinstance(element, dict) and element.get("action_id") == action_id:
                    return str(block.get("block_id") or secrets.token_hex(3)), element
        raise ApiError("action_not_found")

    def _trigger_id(self) -> str:
        return f"{int(time.time())}.{self.team_id}.{secrets.token_hex(16)}"

    def _new_response_url(self, target: _ResponseTarget) -> str:
        response_id = secrets.token_urlsafe(12)
        self._response_targets[response_id] = target
        if len(self._response_targets) > _KEPT_ENVELOPES:
            del self._response_targets[next(iter(self._response_targets))]
        base = self.public_base_url
        if base is None:
            raise RuntimeError(
                "SlackState.public_base_url is unknown: set it, or make any request first"
            )
        return f"{base.rstrip('/')}/sandbox/response/{response_id}"

    # ------------------------------------------------------------------ delivery to the bot

    def _envelope(self, event: dict[str, Any]) -> tuple[str, bytes]:
        self._counter += 1
        event_id = f"Ev0{self._instance}{self._counter:06d}"
        body = json.dumps(
            {
                "token": self.verification_token,
                "team_id": self.team_id,
                "context_team_id": self.team_id,
                "context_enterprise_id": None,
                "api_app_id": self.app_id,
                "event": event,
                "type": "event_callback",
                "event_id": event_id,
                "event_time": int(self.clock()),
                "authorizations": [
                    {
                        "enterprise_id": None,
                        "team_id": self.team_id,
                        "user_id": self.bot_user_id,
                        "is_bot": True,
                        "is_enterprise_install": False,
                    }
                ],
                "is_ext_shared_channel": False,
                "event_context": f"4-{event_id}",
            },
            separators=(",", ":"),
        ).encode()
        self._envelopes[event_id] = body
        if len(self._envelopes) > _KEPT_ENVELOPES:
            del self._envelopes[next(iter(self._envelopes))]
        return event_id, body

    def _deliverable(self) -> bool:
        """Is anyone listening: a connected socket or an events URL?"""
        return bool(self._sockets) or self.events_url is not None

    def _deliver_in_background(self, event: dict[str, Any]) -> None:
        """Deliver without making the poster wait (the bot's own posts and edits)."""
        if not self._deliverable() and not self._socket_used:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._spawn(self._deliver_event(event, background=True))

    async def _deliver_event(
        self, event: dict[str, Any], *, background: bool = False
    ) -> tuple[str, int | None]:
        event_id, body = self._envelope(event)
        if not self._deliverable():
            if self._socket_used:  # a Socket Mode bot between connections: Slack retries
                self._not_connected("event", event_id, 0)
                self._spawn(self._retry(event_id, body, "connection_failed"))
            return event_id, None
        if background:
            async with self._background_slots:
                status, reason = await self._dispatch_event(event_id, body)
        else:
            status, reason = await self._dispatch_event(event_id, body)
        if reason is not None:
            self._spawn(self._retry(event_id, body, reason))
        return event_id, status

    async def _dispatch_event(
        self, event_id: str, body: bytes, retry_num: int = 0, retry_reason: str | None = None
    ) -> tuple[int | None, str | None]:
        """One delivery attempt of an event: over the socket when one is connected, else HTTP."""
        if self._sockets:
            status, _, reason = await self._send_socket(
                "events_api",
                json.loads(body),
                "event",
                event_id=event_id,
                retry_num=retry_num,
                retry_reason=retry_reason,
            )
        else:
            status, _, reason = await self._send(
                body,
                JSON_TYPE,
                "event",
                event_id=event_id,
                retry_num=retry_num,
                retry_reason=retry_reason,
            )
        return status, reason

    async def _retry(self, event_id: str, body: bytes, reason: str) -> None:
        for attempt in range(1, MAX_EVENT_RETRIES + 1):
            delays = self.retry_delays or (0.0,)
            await asyncio.sleep(delays[min(attempt, len(delays)) - 1])
            if not self._deliverable():
                if not self._socket_used:
                    return
                self._not_connected("event", event_id, attempt)
                reason = "connection_failed"
                continue
            _, failure = await self._dispatch_event(event_id, body, attempt, reason)
            if failure is None:
                return
            reason = failure

    def _not_connected(self, kind: str, event_id: str | None, retry_num: int) -> None:
        self.deliveries.append(
            Delivery(kind, event_id, retry_num, None, "connection_failed", "socket")
        )
        log.info(
            "slack_sandbox.delivery_failed kind=%s event_id=%s retry=%s reason=no_socket",
            kind,
            event_id,
            retry_num,
        )

    # ------------------------------------------------------------------ Socket Mode

    @property
    def socket_connections(self) -> int:
        return len(self._sockets)

    def redeem_ticket(self, ticket: str) -> bool:
        """A ticket from apps.connections.open opens one connection, once."""
        if ticket not in self._tickets:
            return False
        del self._tickets[ticket]
        return True

    def attach_socket(self, ws: web.WebSocketResponse) -> _Socket:
        self._socket_count += 1
        conn = _Socket(self._socket_count, ws)
        self._sockets.append(conn)
        self._socket_used = True
        log.info(
            "slack_sandbox.socket_connected socket=%s open=%s", conn.number, len(self._sockets)
        )
        return conn

    def hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "num_connections": len(self._sockets),
            "debug_info": {
                "host": "applink-sandbox",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.app_id},
        }

    def detach_socket(self, conn: _Socket) -> None:
        """The connection closed: envelopes still waiting for its ack fail (and get retried)."""
        if conn in self._sockets:
            self._sockets.remove(conn)
            log.info(
                "slack_sandbox.socket_closed socket=%s open=%s", conn.number, len(self._sockets)
            )
        for envelope_id, (owner, future) in list(self._pending.items()):
            if owner is conn and not future.done():
                future.set_exception(_SocketGone(envelope_id))

    def receive_socket_message(self, data: str) -> None:
        """What the bot sends on the socket: acks ``{"envelope_id", "payload"?}``."""
        try:
            message = json.loads(data)
        except ValueError:
            log.info("slack_sandbox.socket_garbage")
            return
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        pending = self._pending.get(str(envelope_id)) if envelope_id else None
        if pending is None:
            log.info("slack_sandbox.socket_unknown_ack envelope_id=%s", envelope_id)
            return
        if not pending[1].done():
            pending[1].set_result(message)

    async def disconnect_sockets(self, reason: str = "refresh_requested") -> int:
        """Ask every connected client to reconnect, as Slack does before it rotates a host."""
        message = {
            "type": "disconnect",
            "reason": reason,
            "debug_info": {"host": "applink-sandbox"},
        }
        sockets = list(self._sockets)
        for conn in sockets:
            with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
                await conn.send(message)
        return len(sockets)

    async def _send_socket(
        self,
        envelope_type: str,
        payload: dict[str, Any],
        kind: str,
        *,
        event_id: str | None = None,
        retry_num: int = 0,
        retry_reason: str | None = None,
        accepts_response_payload: bool = False,
    ) -> tuple[int | None, dict[str, Any] | None, str | None]:
        """One envelope on the newest socket: (200 or None, the ack, failure reason or None)."""
        envelope_id = str(uuid.uuid4())
        message: dict[str, Any] = {
            "envelope_id": envelope_id,
            "type": envelope_type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
        }
        if envelope_type == "events_api":
            message["retry_attempt"] = retry_num
            message["retry_reason"] = retry_reason or ""
        ack: dict[str, Any] | None = None
        reason: str | None = None
        if not self._sockets:
            reason = "connection_failed"
        else:
            conn = self._sockets[-1]
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self._pending[envelope_id] = (conn, future)
            try:
                await conn.send(message)
                ack = await asyncio.wait_for(future, self.delivery_timeout)
            except TimeoutError:
                reason = "timeout"
            except (_SocketGone, ConnectionError, RuntimeError, aiohttp.ClientError):
                reason = "connection_failed"
            finally:
                del self._pending[envelope_id]
        status = 200 if reason is None else None
        self.deliveries.append(Delivery(kind, event_id, retry_num, status, reason, "socket"))
        if reason is not None:
            log.info(
                "slack_sandbox.delivery_failed kind=%s event_id=%s retry=%s transport=socket "
                "reason=%s",
                kind,
                event_id,
                retry_num,
                reason,
            )
        return status, ack, reason

    async def close_sockets(self) -> None:
        for conn in list(self._sockets):
            with contextlib.suppress(ConnectionError, RuntimeError, aiohttp.ClientError):
                await conn.ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"server closing")
            self.detach_socket(conn)

    async def _send(
        self,
        body: bytes,
        content_type: str,
        kind: str,
        *,
        event_id: str | None = None,
        retry_num: int = 0,
        retry_reason: str | None = None,
    ) -> tuple[int | None, str, str | None]:
        """One signed POST to the bot: (status, body, failure reason or None)."""
        url = self.events_url
        if url is None:
            return None, "", "no_events_url"
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": sign(self.signing_secret, timestamp, body),
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        }
        if retry_num:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason or "http_error"
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        status: int | None = None
        text = ""
        reason: str | None = None
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.delivery_timeout),
            ) as resp:
                status = resp.status
                text = await resp.text()
            if not 200 <= status < 300:
                reason = "http_error"
        except TimeoutError:
            reason = "http_timeout"
        except aiohttp.ClientError:
            reason = "connection_failed"
        self.deliveries.append(Delivery(kind, event_id, retry_num, status, reason))
        if reason is not None:
            log.info(
                "slack_sandbox.delivery_failed kind=%s event_id=%s retry=%s status=%s reason=%s",
                kind,
                event_id,
                retry_num,
                status,
                reason,
            )
        return status, text, reason

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every background delivery (and retry) has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        """Stop background deliveries, close the sockets and the HTTP client."""
        await self.close_sockets()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None


# ---------------------------------------------------------------------- HTTP


async def _read_args(request: web.Request) -> dict[str, Any]:
    """Web API arguments: query string, then a JSON or form body (slack_sdk sends all three)."""
    args: dict[str, Any] = dict(request.query)
    if request.method != "POST" or not request.can_read_body:
        return args
    if request.content_type == JSON_TYPE:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError("invalid_json") from None
        if not isinstance(body, dict):
            raise ApiError("invalid_json")
        args.update(body)
    else:
        form = await request.post()
        args.update({k: v for k, v in form.items() if isinstance(v, str)})
    return args


async def _control_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError("invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError("invalid_json")
    return body


def _control_error(error: ApiError) -> web.Response:
    status = 404 if error.error.endswith("_not_found") else 400
    return web.json_response({"ok": False, "error": error.error}, status=status)


def _required(body: Mapping[str, Any], *keys: str) -> None:
    for key in keys:
        if not body.get(key):
            raise ApiError(f"missing_{key}")


def build_slack_app(state: SlackState) -> web.Application:
    """The stand-in as an aiohttp subapp; mount it with ``app.add_subapp("/slack", ...)``."""
    app = web.Application()
    routes = web.RouteTableDef()

    @web.middleware
    async def learn_base_url(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if state.public_base_url is None:
            state_path = str(request.app.router["sandbox-state"].url_for())
            prefix = state_path.removesuffix("/sandbox/state")
            state.public_base_url = f"{request.url.origin()}{prefix}"
        return await handler(request)

    app.middlewares.append(learn_base_url)

    async def web_api(request: web.Request) -> web.Response:
        try:
            args = await _read_args(request)
            method = request.match_info["method"]
            state.check_token(request.headers.get("Authorization"), args.pop("token", None), method)
            result = state.call(method, args)
        except RateLimitedError as e:
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(e.retry_after)},
            )
        except ApiError as e:
            return web.json_response({"ok": False, "error": e.error})
        return web.json_response(result)

    app.router.add_route("GET", "/api/{method}", web_api)
    app.router.add_route("POST", "/api/{method}", web_api)

    async def get_state(request: web.Request) -> web.Response:
        return web.json_response(state.snapshot())

    app.router.add_get("/sandbox/state", get_state, name="sandbox-state")

    @routes.post("/sandbox/messages")
    async def post_message(request: web.Request) -> web.Response:
        try:
            body = await _control_body(request)
            _required(body, "user", "channel", "text")
            result = await state.post_as_user(
                body["user"],
                body["channel"],
                str(body["text"]),
                body.get("thread_ts") or None,
                raw=_as_bool(body.get("raw", False)),
            )
        except ApiError as e:
            return _control_error(e)
        return web.json_response(
            {"ok": True, "ts": result.ts, "event_id": result.event_id, "status": result.status}
        )

    @routes.post("/sandbox/messages/edit")
    async def edit_message(request: web.Request) -> web.Response:
        try:
            body = await _control_body(request)
            _required(body, "user", "channel", "ts", "text")
            result = await state.edit_as_user(
                body["user"],
                body["channel"],
                str(body["ts"]),
                str(body["text"]),
                raw=_as_bool(body.get("raw", False)),
            )
        except ApiError as e:
            return _control_error(e)
        return web.json_response(
            {"ok": True, "ts": result.ts, "event_id": result.event_id, "status": result.status}
        )

    @routes.post("/sandbox/commands")
    async def run_command(request: web.Request) -> web.Response:
        try:
            body = await _control_body(request)
            _required(body, "user", "channel")
            result = await state.run_command(
                body["user"],
                body["channel"],
                str(body.get("text") or ""),
                str(body.get("command") or "/ticket"),
            )
        except ApiError as e:
            return _control_error(e)
        return web.json_response({"ok": True, "status": result.status, "response": result.response})

    @routes.post("/sandbox/actions")
    async def click_action(request: web.Request) -> web.Response:
        try:
            body = await _control_body(request)
            _required(body, "user", "channel", "message_ts", "action_id")
            value = body.get("value")
            status = await state.click_action(
                body["user"],
                body["channel"],
                str(body["message_ts"]),
                str(body["action_id"]),
                str(value) if value is not None else None,
            )
        except ApiError as e:
            return _control_error(e)
        return web.json_response({"ok": True, "status": status})

    @routes.post("/sandbox/redeliver")
    async def redeliver(request: web.Request) -> web.Response:
        try:
            body = await _control_body(request)
            _required(body, "event_id")
            status = await state.redeliver(str(body["event_id"]))
        except ApiError as e:
            return _control_error(e)
        return web.json_response({"ok": True, "status": status})

    @routes.post("/sandbox/config")
    async def configure(request: web.Request) -> web.Response:
        try:
            body = await _control_body(request)
            if "events_url" in body:
                state.events_url = body["events_url"] or None
            if "rate_limit_per_channel" in body:
                rate = float(body["rate_limit_per_channel"] or 0)
                if rate < 0 or math.isnan(rate):
                    raise ApiError("invalid_rate_limit_per_channel")
                state.rate_limit_per_channel = rate
        except (TypeError, ValueError):
            return _control_error(ApiError("invalid_rate_limit_per_channel"))
        except ApiError as e:
            return _control_error(e)
        return web.json_response(
            {
                "ok": True,
                "events_url": state.events_url,
                "rate_limit_per_channel": state.rate_limit_per_channel,
            }
        )

    @routes.get("/socket/{ticket}")
    async def socket_mode(request: web.Request) -> web.StreamResponse:
        """The WebSocket apps.connections.open points at: hello, then envelopes to ack."""
        if not state.redeem_ticket(request.match_info["ticket"]):
            return web.json_response({"ok": False, "error": "invalid_ticket"}, status=401)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = state.attach_socket(ws)
        try:
            await conn.send(state.hello())
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    state.receive_socket_message(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    break
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            pass
        finally:
            state.detach_socket(conn)
        return ws

    @routes.post("/sandbox/socket/disconnect")
    async def socket_disconnect(request: web.Request) -> web.Response:
        try:
            body = await _control_body(request) if request.can_read_body else {}
        except ApiError as e:
            return _control_error(e)
        sent = await state.disconnect_sockets(str(body.get("reason") or "refresh_requested"))
        return web.json_response({"ok": True, "sockets": sent})

    @routes.post("/sandbox/response/{response_id}")
    async def response_url(request: web.Request) -> web.Response:
        target = state.response_target(request.match_info["response_id"])
        if target is None:
            return web.json_response({"ok": False, "error": "expired_url"}, status=404)
        if request.content_type == JSON_TYPE:
            try:
                payload: Any = await request.json()
            except ValueError:
                return web.json_response({"ok": False, "error": "invalid_payload"}, status=400)
        else:
            form = await request.post()
            raw = form.get("payload")
            try:
                payload = json.loads(raw) if isinstance(raw, str) else None
            except ValueError:
                payload = None
        if not isinstance(payload, dict):
            return web.json_response({"ok": False, "error": "invalid_payload"}, status=400)
        state.respond(target, payload)
        return web.json_response({"ok": True})

    app.add_routes(routes)

    async def close_sockets(_: web.Application) -> None:
        await state.close_sockets()  # else the server's shutdown waits for the open sockets

    async def close_state(_: web.Application) -> None:
        await state.aclose()

    app.on_shutdown.append(close_sockets)
    app.on_cleanup.append(close_state)
    return app
