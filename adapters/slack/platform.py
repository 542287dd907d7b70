"""Slack as a `ChatPlatform`: slack-bolt for what comes in, slack_sdk's Web API for what goes out.

Translation only: Slack payloads in, `ChatMessage` / commands / actions out; `Rich`
bodies rendered to escaped mrkdwn on the way back.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.addressing import command_text, slash_command_text
from bot.domain import (
    ChannelId,
    ChatAction,
    ChatMessage,
    ChatUserId,
    Link,
    Mention,
    MessageId,
    Outgoing,
    Platform,
    Quote,
    Rich,
    Text,
    ThreadRef,
)
from bot.outbox import ThreadMark
from bot.ports import (
    ActionHandler,
    Clock,
    CommandContext,
    CommandHandler,
    KeyValue,
    MessageHandler,
    PlatformRefused,
    RateLimited,
    Unavailable,
)

log = logging.getLogger("seva." + __name__)

DEFAULT_API_BASE_URL = "https://slack.com/api/"
SOCKET_CONNECT_TIMEOUT = 30.0  # seconds
TICKET_EVENT = "seva_ticket"
POST_EVENT = "seva_post"

# Ticket state -> (reaction, add?) on the thread root.
_MARKS: dict[str, tuple[str, bool]] = {
    ThreadMark.CLOSED: ("white_check_mark", True),
    ThreadMark.OPEN: ("white_check_mark", False),
    ThreadMark.CLAIMED: ("eyes", True),
    ThreadMark.ANSWERED: ("speech_balloon", True),
    ThreadMark.ESCALATED: ("rotating_light", True),
}
# Errors that mean "already in the state you asked for".
_IDEMPOTENT_ERRORS = frozenset({"already_reacted", "no_reaction"})
_AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
# A human reply in a thread that was also sent to the channel: still a human message.
_HUMAN_SUBTYPES = frozenset({"thread_broadcast"})

_HISTORY_PAGES = 5
_PAGE_SIZE = 200
_SLASH_ANSWER_BUDGET = 2.5  # seconds; Slack gives 3 for the ack
_SECTION_LIMIT = 3000
_MAX_SECTIONS = 49  # and one actions block: Slack's limit is 50
_BUTTON_LABEL_LIMIT = 75

T = TypeVar("T")


# --- Rendering (pure) ---------------------------------------------------------

_ZWJ = "\u200d"
_BROADCAST_RE = re.compile(r"@(?=(?:here|channel|everyone)\b)", re.IGNORECASE)
_USER_ID_RE = re.compile(r"^[UW][A-Z0-9]{2,}$")
_SAFE_URL_RE = re.compile(r"^https?://[^\s|<>]+$", re.IGNORECASE)


def escape_mrkdwn(text: str) -> str:
    """Makes outside text inert: no `<!channel>`, `<@U…>`, forged links or `@here` pings."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST_RE.sub("@" + _ZWJ, escaped)


def _bold(text: str) -> str:
    # mrkdwn bold must hug non-space characters and cannot span lines.
    out = []
    for line in text.split("\n"):
        core = line.strip()
        if not core:
            out.append(line)
            continue
        lead = line[: len(line) - len(line.lstrip())]
        trail = line[len(line.rstrip()) :]
        out.append(f"{lead}*{core}*{trail}")
    return "\n".join(out)


def _link(url: str, label: str) -> str:
    safe_label = escape_mrkdwn(label.replace("\n", " "))
    if not _SAFE_URL_RE.match(url):
        # Not a link we are willing to build: show it as inert text.
        shown = escape_mrkdwn(url)
        return f"{safe_label} ({shown})" if label and label != url else shown
    target = url.replace("&", "&amp;")
    return f"<{target}|{safe_label}>" if label else f"<{target}>"


def render_mrkdwn(rich: Rich) -> str:
    """Slack mrkdwn for a `Rich` body; everything that came from outside is escaped."""
    out: list[str] = []

    def at_line_start() -> bool:
        return not out or out[-1].endswith("\n")

    after_quote = False
    for seg in rich.segments:
        if after_quote and not (isinstance(seg, Text) and seg.text.startswith("\n")):
            out.append("\n")
        after_quote = False
        match seg:
            case Text(text=t, bold=b):
                out.append(_bold(escape_mrkdwn(t)) if b else escape_mrkdwn(t))
            case Mention(user=u):
                out.append(f"<@{u}>" if _USER_ID_RE.match(u) else escape_mrkdwn(f"@{u}"))
            case Link(url=url, label=label):
                out.append(_link(url, label))
            case Quote(text=t):
                if not at_line_start():
                    out.append("\n")
                lines = t.splitlines() or [""]
                out.append("\n".join(">" + escape_mrkdwn(line) for line in lines))
                after_quote = True
    return "".join(out)


# --- Parsing what Slack sends (pure) --------------------------------------------

_ANGLE_RE = re.compile(r"<([^<>]*)>")


def _plain_entity(match: re.Match[str]) -> str:
    inner = match.group(1)
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return target  # <@U123|name> -> @U123: the id is what the core understands
    if target.startswith("#"):
        return f"#{label}" if label else target
    if target.startswith("!"):
        word = target[1:].split("^", 1)[0]
        if label:
            return label
        return f"@{word}" if word in {"here", "channel", "everyone"} else ""
    if not label or label == target or target.endswith(label):
        return label or target
    return f"{label} ({target})"


def slack_to_plain(text: str) -> str:
    """What a person typed, from Slack's message encoding (entities and `<…>` markup)."""
    plain = _ANGLE_RE.sub(_plain_entity, text)
    return plain.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


# --- The adapter ------------------------------------------------------------------


async def check(*, bot_token: str, api_base_url: str = DEFAULT_API_BASE_URL) -> str:
    """`seva check --online`: Slack's `auth.test` with the bot token; whom it names.

    Raises PlatformRefused naming what to check.
    """
    client = AsyncWebClient(token=bot_token, base_url=api_base_url)
    try:
        resp = await client.auth_test()
    except Exception as e:
        error = getattr(getattr(e, "response", None), "data", {}) or {}
        reason = error.get("error") if isinstance(error, dict) else None
        raise PlatformRefused(
            f"auth.test failed ({reason or type(e).__name__}); check SLACK_BOT_TOKEN "
            "and SLACK_API_BASE_URL"
        ) from None
    finally:
        session = getattr(client, "session", None)
        if session is not None:
            await session.close()
    return f"bot user {resp.get('user_id')} in team {resp.get('team')}"


class SlackPlatform:
    """Slack workspace access for one bot user (HTTP events or Socket Mode)."""

    name: Platform = "slack"
    private_responses = True

    def __init__(
        self,
        *,
        bot_token: str,
        signing_secret: str,
        kv: KeyValue,
        app_token: str | None = None,
        api_base_url: str = DEFAULT_API_BASE_URL,
        command: str = "/ticket",
        post_rate_per_channel: float = 1.0,
        session: aiohttp.ClientSession | None = None,
        max_rate_limit_retries: int = 0,
        timeout: int = 10,
        clock: Clock | None = None,
    ) -> None:
        if post_rate_per_channel < 0:
            raise ValueError("post_rate_per_channel must be >= 0")
        self._kv = kv
        self._clock = clock
        self._app_token = app_token or None
        self._command = command if command.startswith("/") else f"/{command}"
        self._interval = 1.0 / post_rate_per_channel if post_rate_per_channel else 0.0
        self._next_slot: dict[str, float] = {}
        self._session = session
        self._owns_session = session is None
        self._client = AsyncWebClient(
            token=bot_token,
            base_url=api_base_url if api_base_url.endswith("/") else api_base_url + "/",
            session=session,
            timeout=timeout,
            # No connection-error retries: a dropped connection may hide a message that
            # was created, and only the outbox may decide to post again (after `find`).
            # A 429 becomes RateLimited, and the outbox waits out Retry-After itself.
            retry_handlers=[
                AsyncRateLimitErrorRetryHandler(max_retry_count=max_rate_limit_retries)
            ],
        )
        self._app = AsyncApp(
            client=self._client,
            signing_secret=signing_secret,
            process_before_response=False,
            request_verification_enabled=True,
            logger=log,
        )
        self._socket: Any = None
        self._bot_user_id: str | None = None
        self._bot_id: str | None = None
        self._on_message: MessageHandler | None = None
        self._on_command: CommandHandler | None = None
        self._on_action: ActionHandler | None = None
        self._connected = False
        self._error: str | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._register_listeners()

    def __repr__(self) -> str:  # never show tokens
        return f"SlackPlatform(mode={self.mode!r}, bot_user={self._bot_user_id!r})"

    @property
    def mode(self) -> Literal["http", "socket"]:
        return "socket" if self._app_token else "http"

    @property
    def bot_user_id(self) -> str | None:
        return self._bot_user_id

    # --- lifecycle

    async def start(
        self,
        on_message: MessageHandler,
        on_command: CommandHandler,
        on_action: ActionHandler,
    ) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._client.session = self._session
        try:
            auth = await self._call("auth.test", self._client.auth_test())
        except PlatformRefused as e:
            raise PlatformRefused(
                f"Slack refused SLACK_BOT_TOKEN on auth.test ({e}); check the bot token"
            ) from e
        self._bot_user_id = _str(auth.get("user_id"))
        self._bot_id = _str(auth.get("bot_id"))
        self._on_message, self._on_command, self._on_action = on_message, on_command, on_action
        log.info(
            "slack.started mode=%s bot_user=%s team=%s",
            self.mode,
            self._bot_user_id,
            auth.get("team_id"),
        )
        if self._app_token:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            self._socket = AsyncSocketModeHandler(self._app, self._app_token)
            try:
                # slack_sdk's connect() retries every failure forever, a refused token too:
                # ask for the first URL here, so that a refusal fails start() instead.
                self._socket.client.wss_uri = await self._socket.client.issue_new_wss_url()
                # ...and it retries an unreachable WebSocket forever too: bound the wait.
                await asyncio.wait_for(self._socket.connect_async(), SOCKET_CONNECT_TIMEOUT)
            except SlackApiError as e:
                error = e.response.get("error", "unknown_error")
                self._fail(f"apps.connections.open: {error}")
                raise PlatformRefused(
                    f"Slack refused SLACK_APP_TOKEN for Socket Mode ({error}); "
                    "check the app-level token (xapp-…, scope connections:write)"
                ) from e
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                self._socket.client.wss_uri = None
                self._fail(f"socket mode: {type(e).__name__}")
                raise Unavailable(
                    f"Slack Socket Mode: could not open the WebSocket ({type(e).__name__}); "
                    "is wss-primary.slack.com reachable from here?"
                ) from e

    async def stop(self) -> None:
        self._on_message = self._on_command = self._on_action = None
        if self._socket is not None:
            try:
                await self._socket.close_async()
            finally:
                self._socket = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
            self._client.session = None
        self._connected = False

    def health(self) -> dict[str, object]:
        return {"connected": self._connected, "mode": self.mode, "error": self._error}

    async def handle_http(self, request: web.Request) -> web.Response:
        """`POST /slack/events`: events, slash commands and interactivity.

        bolt verifies the signature and age before any of our code runs.
        """
        bolt_response = await self._app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    # --- outgoing

    async def post(self, message: Outgoing) -> MessageId:
        text = render_mrkdwn(message.body)
        kwargs: dict[str, Any] = {
            "channel": message.channel,
            "text": text,
            "unfurl_links": False,
            "unfurl_media": False,
            "link_names": False,
            "metadata": _metadata(message),
        }
        if message.thread_root:
            kwargs["thread_ts"] = message.thread_root
        if message.actions:
            kwargs["blocks"] = _blocks(text, message)
        await self._pace(message.channel)
        resp = await self._call("chat.postMessage", self._client.chat_postMessage(**kwargs))
        ts = _str(resp.get("ts"))
        if ts is None:
            raise Unavailable("slack chat.postMessage answered without a ts")
        log.info("slack.posted key=%s channel=%s ts=%s", message.key, message.channel, ts)
        return MessageId(ts)

    async def find(self, message: Outgoing) -> MessageId | None:
        cursor: str | None = None
        for _ in range(_HISTORY_PAGES):
            if message.thread_root:
                call = self._client.conversations_replies(
                    channel=message.channel,
                    ts=message.thread_root,
                    include_all_metadata=True,
                    limit=_PAGE_SIZE,
                    cursor=cursor,
                )
                resp = await self._call("conversations.replies", call)
            else:
                call = self._client.conversations_history(
                    channel=message.channel,
                    include_all_metadata=True,
                    limit=_PAGE_SIZE,
                    cursor=cursor,
                )
                resp = await self._call("conversations.history", call)
            for msg in resp.get("messages") or []:
                if self._is_ours(msg) and _matches(msg, message):
                    return MessageId(str(msg["ts"]))
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return None
        return None

    async def mark(self, thread: ThreadRef, state: ThreadMark) -> None:
        mark = _MARKS.get(state)
        if mark is None:
            log.warning("slack.mark_unknown_state state=%s", state)
            return
        emoji, add = mark
        method = self._client.reactions_add if add else self._client.reactions_remove
        name = "reactions.add" if add else "reactions.remove"
        await self._call(
            name,
            method(channel=thread.channel, timestamp=thread.root, name=emoji),
            tolerate=_IDEMPOTENT_ERRORS,
        )

    async def update(self, channel: ChannelId, message_id: MessageId, body: Rich) -> None:
        await self._call(
            "chat.update",
            self._client.chat_update(
                channel=channel, ts=message_id, text=render_mrkdwn(body), blocks=[]
            ),
        )

    async def respond(self, ctx: CommandContext, body: Rich) -> None:
        kwargs: dict[str, Any] = {
            "channel": ctx.channel,
            "user": ctx.user,
            "text": render_mrkdwn(body),
        }
        if ctx.thread_root:
            kwargs["thread_ts"] = ctx.thread_root
        await self._call("chat.postEphemeral", self._client.chat_postEphemeral(**kwargs))

    def _now(self) -> datetime:
        return self._clock.now() if self._clock is not None else datetime.now(UTC)

    async def _pace(self, channel: ChannelId) -> None:
        """Per-channel gate: posts to one channel leave at most `rate` per second."""
        if not self._interval:
            return
        now = time.monotonic()
        slot = max(now, self._next_slot.get(channel, 0.0))
        self._next_slot[channel] = slot + self._interval  # reserved before awaiting
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _call(
        self,
        method: str,
        call: Awaitable[AsyncSlackResponse],
        tolerate: frozenset[str] = frozenset(),
    ) -> AsyncSlackResponse:
        """One Web API call, its outcome recorded for `health()` and mapped to port errors."""
        try:
            resp = await call
        except SlackApiError as e:
            status = e.response.status_code
            error = str(e.response.get("error", "unknown_error"))
            if error in tolerate:
                self._ok()
                return e.response  # type: ignore[return-value]
            if status == 429:
                retry_after = _retry_after(e.response.headers)
                self._fail(f"{method}: rate limited")
                raise RateLimited(self._now() + timedelta(seconds=retry_after), method) from e
            if status >= 500:
                self._fail(f"{method}: HTTP {status}")
                raise Unavailable(f"slack {method}: HTTP {status}") from e
            if error in _AUTH_ERRORS:
                self._fail(f"{method}: {error}")
            else:
                self._ok()  # Slack answered; the request itself was refused
            log.warning("slack.refused method=%s error=%s", method, error)
            raise PlatformRefused(f"slack {method}: {error}") from e
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self._fail(f"{method}: {type(e).__name__}")
            raise Unavailable(f"slack {method}: {type(e).__name__}: {e}") from e
        self._ok()
        return resp

    def _ok(self) -> None:
        self._connected, self._error = True, None

    def _fail(self, error: str) -> None:
        self._connected, self._error = False, error
        log.warning("slack.api_failed error=%s", error)

    def _is_ours(self, msg: Mapping[str, Any]) -> bool:
        bot_id, user = msg.get("bot_id"), msg.get("user")
        if bot_id is None and user is None:
            return True
        return (bot_id is not None and bot_id == self._bot_id) or (
            user is not None and user == self._bot_user_id
        )

    # --- incoming

    def _register_listeners(self) -> None:
        app = self._app
        app.event("message")(self._on_message_event)
        # Anything else we are subscribed to is acknowledged and ignored (no 404 retries).
        app.event(re.compile(r".*"))(self._ignore_event)
        app.command(self._command)(self._on_slash_command)
        app.action(re.compile(r".*"))(self._on_block_action)

    async def _ignore_event(self) -> None:
        """Events are acknowledged by bolt before listeners run."""

    async def _on_message_event(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        event_id = str(body.get("event_id") or "")
        try:
            await self._deliver(event, event_id)
        except Exception:
            log.exception("slack.event_failed event_id=%s", event_id)

    async def _deliver(self, event: Mapping[str, Any], event_id: str) -> None:
        subtype = event.get("subtype")
        user = event.get("user")
        if (
            event.get("bot_id")
            or (subtype and subtype not in _HUMAN_SUBTYPES)
            or not user
            or user == self._bot_user_id
        ):
            return
        if self._on_message is None or self._on_command is None:
            log.warning("slack.event_before_start event_id=%s", event_id)
            return
        if event_id and not self._kv.first_sight("slack", event_id):
            log.info("slack.event_duplicate event_id=%s", event_id)
            return
        channel = ChannelId(str(event.get("channel", "")))
        ts = MessageId(str(event.get("ts", "")))
        thread_ts = _str(event.get("thread_ts"))
        text = slack_to_plain(str(event.get("text") or ""))
        mentions = [f"@{self._bot_user_id}"] if self._bot_user_id else []
        command = command_text(text, mentions)
        if command is not None:
            ctx = CommandContext(
                platform="slack",
                channel=channel,
                user=ChatUserId(user),
                thread_root=MessageId(thread_ts) if thread_ts else None,
            )
            await self.respond(ctx, await self._answer(command, ctx))
            return
        await self._on_message(
            ChatMessage(
                platform="slack",
                channel=channel,
                id=ts,
                sender=ChatUserId(user),
                text=text,
                thread_root=MessageId(thread_ts) if thread_ts and thread_ts != ts else None,
                event_id=event_id,
            )
        )

    async def _answer(self, command: str, ctx: CommandContext) -> Rich:
        on_command = self._on_command
        if on_command is None:
            return Rich.of("The bot is not ready yet; try again in a moment.")
        try:
            return await on_command(command, ctx)
        except Exception:
            log.exception("slack.command_failed channel=%s user=%s", ctx.channel, ctx.user)
            return Rich.of("Sorry, that command failed. Please try again.")

    async def _on_slash_command(self, command: dict[str, Any], ack: AsyncAck) -> None:
        ctx = CommandContext(
            platform="slack",
            channel=ChannelId(str(command.get("channel_id", ""))),
            user=ChatUserId(str(command.get("user_id", ""))),
        )
        text = slash_command_text(slack_to_plain(str(command.get("text") or "")))
        task = self._spawn(self._answer(text, ctx))
        try:
            answer = await asyncio.wait_for(asyncio.shield(task), _SLASH_ANSWER_BUDGET)
        except TimeoutError:
            # Slack gives up after 3 s: ack now, send the answer when it is ready.
            await ack(response_type="ephemeral", text="Working on it…")
            task.add_done_callback(lambda t: self._late_answer(t, ctx))
            return
        await ack(response_type="ephemeral", text=render_mrkdwn(answer))

    def _late_answer(self, task: asyncio.Task[Rich], ctx: CommandContext) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        self._spawn(self._respond_quietly(ctx, task.result()))

    async def _respond_quietly(self, ctx: CommandContext, body: Rich) -> None:
        try:
            await self.respond(ctx, body)
        except Exception:
            log.exception("slack.respond_failed channel=%s user=%s", ctx.channel, ctx.user)

    async def _on_block_action(self, body: dict[str, Any], ack: AsyncAck) -> None:
        await ack()
        user = ChatUserId(str((body.get("user") or {}).get("id", "")))
        channel = ChannelId(str((body.get("channel") or {}).get("id", "")))
        for action in body.get("actions") or []:
            action_id = str(action.get("action_id", ""))
            try:
                if self._on_action is None:
                    log.warning("slack.action_before_start action_id=%s", action_id)
                    return
                value = str(action.get("value") or "")
                await self._on_action(ChatAction("slack", channel, action_id, value, user))
            except Exception:
                log.exception("slack.action_failed action_id=%s user=%s", action_id, user)

    def _spawn(self, coro: Awaitable[T]) -> asyncio.Task[T]:
        task: asyncio.Task[T] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


# --- helpers --------------------------------------------------------------------


def _str(value: object) -> str | None:
    return str(value) if value else None


def _metadata(message: Outgoing) -> dict[str, Any]:
    if message.is_root:
        return {
            "event_type": TICKET_EVENT,
            "event_payload": {
                "ticket": message.ticket,
                "tweet_id": str(message.tweet_id or ""),
                "key": message.key,
            },
        }
    payload: dict[str, Any] = {"key": message.key}
    if message.ticket is not None:
        payload["ticket"] = message.ticket
    return {"event_type": POST_EVENT, "event_payload": payload}


def _matches(msg: Mapping[str, Any], message: Outgoing) -> bool:
    meta = msg.get("metadata") or {}
    payload = meta.get("event_payload") or {}
    if payload.get("key") == message.key:
        return True
    return (
        message.is_root
        and message.ticket is not None
        and meta.get("event_type") == TICKET_EVENT
        and payload.get("ticket") == message.ticket
    )


def _sections(text: str) -> list[str]:
    """Mrkdwn in pieces a section block takes, cut at line ends: a long preview shows
    whole (Slack allows 50 blocks; a reply chain's preview is far below that)."""
    out: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > _SECTION_LIMIT:
            out.append(line[:_SECTION_LIMIT])
            line = line[_SECTION_LIMIT:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > _SECTION_LIMIT:
            out.append(current)
            candidate = line
        current = candidate
    out.append(current)
    return [piece or " " for piece in out][:_MAX_SECTIONS]


def _blocks(text: str, message: Outgoing) -> list[dict[str, Any]]:
    buttons: list[dict[str, Any]] = []
    for i, action in enumerate(message.actions):
        label = action.label[:_BUTTON_LABEL_LIMIT] or action.id
        button: dict[str, Any] = {
            "type": "button",
            "action_id": action.id,
            "value": action.value,
            "text": {"type": "plain_text", "text": label, "emoji": True},
        }
        if i == 0:
            button["style"] = "primary"
        buttons.append(button)
    return [
        *(
            {"type": "section", "text": {"type": "mrkdwn", "text": piece}}
            for piece in _sections(text)
        ),
        {"type": "actions", "elements": buttons},
    ]


def _retry_after(headers: Mapping[str, Any]) -> float:
    for key, value in headers.items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) else value
            try:
                return max(float(raw), 0.0)
            except (TypeError, ValueError):
                break
    return 1.0


__all__ = [
    "SlackPlatform",
    "escape_mrkdwn",
    "render_mrkdwn",
    "slack_to_plain",
]
