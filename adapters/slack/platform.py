"""Slack as a `ChatPlatform`: slack-bolt for what comes in, slack_sdk's Web API for what goes out.

Translation only: Slack payloads in (parse.py), `ChatMessage` / commands / actions
out; `Rich` bodies rendered to escaped mrkdwn on the way back (render.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.inbox import Arrivals, InboxWorker
from adapters.slack import ingress, markup, parse, scopes
from adapters.slack.render import blocks, metadata, render_mrkdwn
from bot.addressing import command_text, slash_command_text
from bot.domain import (
    ChannelId,
    ChatFile,
    ChatUserId,
    MessageId,
    Outgoing,
    Platform,
    Rich,
    ThreadRef,
)
from bot.media import MAX_IMAGE_BYTES
from bot.outbox import ThreadMark
from bot.ports import (
    ActionHandler,
    CheckLine,
    Clock,
    CommandContext,
    CommandHandler,
    CredentialsRefused,
    Inbox,
    InboxEvent,
    MessageHandler,
    PlatformRefused,
    RateLimited,
    Standing,
    StoreUnavailable,
    Unavailable,
)

log = logging.getLogger("seva." + __name__)

DEFAULT_API_BASE_URL = "https://slack.com/api/"
SOCKET_CONNECT_TIMEOUT = 30.0  # seconds
# An event is acknowledged within this, stored or not (Slack allows 3 s; SPEC asks 1 s).
ACK_BUDGET = 0.9  # seconds
UNPACED_BURST = 20  # posts claimed at a time when a channel is not paced

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
# How each `ok: false` error is met (SPEC section 5; Slack's descriptions in
# /work/notes/facts-issue7.md item 16: Slack answers HTTP 200 with `ok: false` for all
# of them, so the error string decides, whatever the status).
# A retry can cure these; `fatal_error` says part of the operation may have succeeded,
# so a post that met any of them is looked for before it is sent again.
_RETRY_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# Too many requests, outside HTTP 429 (`rate_limited`: "Application has posted too many
# messages", chat.postMessage): wait, then retry.
_RATE_ERRORS = frozenset({"ratelimited", "rate_limited"})
RATE_LIMIT_FALLBACK = timedelta(seconds=60)  # no Retry-After comes with them
# Our credentials: the platform pauses until a call succeeds again.
_AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
# Refusals no retry can cure: the post fails, counted and named in /healthz. Any other
# error is retried (with growing waits) rather than dropped.
_REFUSED_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "msg_too_long",
        "invalid_blocks",
        "no_text",
        "too_many_attachments",
        "restricted_action",
        "message_not_found",
        # The thread's root is gone (someone deleted it): "Value for thread_ts was
        # missing or invalid" (conversations.replies' errors; chat.postMessage answers
        # a reply to it the same way). Retrying would hold up the channel's lane for ever.
        "thread_not_found",
        "cant_update_message",
        "user_not_in_channel",
        "missing_scope",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "metadata_too_large",
        # usergroups.users.list / .update (oncall.slack_usergroup), from Slack's method
        # reference: a group that is not there, or people Slack will not put in it.
        "no_such_subteam",
        "invalid_users",
        "no_users_provided",
        "failed_for_some_users",
        "permission_denied",
        "plan_upgrade_required",
        "subteam_max_users_exceeded",
    }
)

_HISTORY_PAGES = 5
_PAGE_SIZE = 200
_SLASH_ANSWER_BUDGET = 2.5  # seconds; Slack gives 3 for the ack
MEMBERS_TTL = 60.0  # seconds a channel's member list is trusted
MEMBER_PAGES = 20  # of 1000 members each
_DIRECTORY_TTL = 600.0  # seconds: users.list is tier 2 (20+ a minute), so it is cached
_NAMES_KEPT = 5000

T = TypeVar("T")


# --- The adapter ------------------------------------------------------------------


async def check(
    *,
    bot_token: str,
    api_base_url: str = DEFAULT_API_BASE_URL,
    channels: Collection[str] = (),
    features: Collection[str] = (),
) -> list[CheckLine]:
    """`seva check --online`, Slack's part: whom the token names (`auth.test`), the
    scopes it was granted (`x-oauth-scopes`) against those the configured features need
    (scopes.py), and whether the bot is a member of each configured channel
    (`conversations.info`'s `is_member`).

    Raises PlatformRefused naming what to check when the token is refused.
    """
    client = AsyncWebClient(token=bot_token, base_url=api_base_url)
    try:
        try:
            auth = await client.auth_test()
        except Exception as e:
            error = getattr(getattr(e, "response", None), "data", {}) or {}
            reason = error.get("error") if isinstance(error, dict) else None
            raise PlatformRefused(
                f"auth.test failed ({reason or type(e).__name__}); check SLACK_BOT_TOKEN "
                "and SLACK_API_BASE_URL"
            ) from None
        lines = [CheckLine(True, f"bot user {auth.get('user_id')} in team {auth.get('team')}")]
        lines += _scope_lines(_header(auth.headers, "x-oauth-scopes"), features)
        for channel in channels:
            lines.append(await _membership(client, channel))
        return lines
    finally:
        session = getattr(client, "session", None)
        if session is not None:
            await session.close()


def _scope_lines(granted_header: str | None, features: Collection[str]) -> list[CheckLine]:
    wanted = scopes.needed(features)
    if granted_header is None:
        return [
            CheckLine(
                False,
                "Slack did not say which scopes the token has (no x-oauth-scopes header); "
                f"make sure it has {', '.join(sorted(wanted))}",
            )
        ]
    granted = {s.strip() for s in granted_header.split(",") if s.strip()}
    missing = [(scope, wanted[scope]) for scope in sorted(wanted) if scope not in granted]
    if not missing:
        return [
            CheckLine(True, f"all {len(wanted)} scopes the configured features need are granted")
        ]
    return [
        CheckLine(
            False,
            f"scope {scope} is missing, so the bot cannot {feature.does}: add it to the bot "
            "token scopes (slack-app-manifest.yml lists them all) and reinstall the app",
        )
        for scope, feature in missing
    ]


async def _membership(client: AsyncWebClient, channel: str) -> CheckLine:
    try:
        resp = await client.conversations_info(channel=channel)
    except SlackApiError as e:
        error = str(e.response.get("error", "unknown_error"))
        if error == "channel_not_found":
            return CheckLine(
                False,
                f"channel {channel} cannot be seen by the bot: check the id in the config, "
                "and for a private channel invite the bot (/invite @seva) first",
            )
        if error == "missing_scope":
            return CheckLine(
                False, f"channel {channel} could not be checked: the token lacks channels:read"
            )
        return CheckLine(False, f"channel {channel} could not be checked: {error}")
    info = resp.get("channel") or {}
    name = f"#{info.get('name')} ({channel})" if info.get("name") else channel
    if info.get("is_archived"):
        return CheckLine(False, f"{name} is archived: unarchive it or configure another channel")
    if not info.get("is_member"):
        return CheckLine(
            False, f"the bot is not a member of {name}: type /invite @seva in that channel"
        )
    return CheckLine(True, f"the bot is a member of {name}")


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return str(value[0] if isinstance(value, list | tuple) else value)
    return None


class SlackPlatform:
    """Slack workspace access for one bot user (HTTP events or Socket Mode)."""

    name: Platform = "slack"
    private_responses = True

    def __init__(
        self,
        *,
        bot_token: str,
        signing_secret: str,
        inbox: Inbox,
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
        self._signing_secret = signing_secret
        self._clock: Clock = clock or _SystemClock()
        self._inbox = inbox
        self._receiving = Arrivals()  # requests on /slack/events being answered now
        self._worker = InboxWorker(
            inbox,
            "slack",
            self._handle_stored,
            self._clock,
            arrivals=self._receiving,
            order=_thread_of,
        )
        self._app_token = app_token or None
        self._command = command if command.startswith("/") else f"/{command}"
        self._interval = 1.0 / post_rate_per_channel if post_rate_per_channel else 0.0
        # Paced: one post at a time, claimed right before it goes; unpaced: a batch.
        self.burst = 1 if self._interval else UNPACED_BURST
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
            # Socket Mode's events go to the inbox before anything else looks at them
            # (HTTP's never reach bolt: handle_http stores them itself).
            before_authorize=self._store_first,
            logger=log,
        )
        self._socket: Any = None
        self._bot_user_id: str | None = None
        self._home: frozenset[str] = frozenset()
        self._members: dict[str, tuple[float, frozenset[str]]] = {}  # channel -> (at, ids)
        self._bot_id: str | None = None
        self._bot_names: list[str] = []  # how people address the bot in plain text
        self._people: dict[str, str] = {}  # user id -> the name readers see
        self._channel_names: dict[str, str] = {}
        self._directory: list[tuple[str, frozenset[str]]] = []  # users.list, cached
        self._directory_at = float("-inf")
        self._on_message: MessageHandler | None = None
        self._on_command: CommandHandler | None = None
        self._on_action: ActionHandler | None = None
        self._connected = False
        self._error: str | None = None
        self._failing_since: datetime | None = None
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
        self._bot_names = [n for n in (_str(auth.get("user")),) if n]
        # The bot's own workspace (and organisation on Enterprise Grid): anyone else's
        # is Slack Connect, never tweeting and never changing tickets (parse.py).
        self._home = frozenset(
            str(v) for v in (auth.get("team_id"), auth.get("enterprise_id")) if v
        )
        if self._bot_user_id:
            await self._learn_bot_names(self._bot_user_id)
        self._on_message, self._on_command, self._on_action = on_message, on_command, on_action
        self._worker.start()  # events stored before a crash are handled now
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
        await self._worker.stop()
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
        since = self._failing_since.isoformat() if self._failing_since else None
        return {
            "connected": self._connected,
            "mode": self.mode,
            "error": self._error,
            "since": since,
        }

    async def handle_http(self, request: web.Request) -> web.Response:
        """`POST /slack/events`: events, slash commands and interactivity.

        The signature is checked on the raw body before anything parses it (401 when
        it fails); a signed body that is no Slack payload gets 400. An event or a button
        press is acknowledged once it is stored in the inbox, and handled from there;
        when it cannot be stored the answer is 503, so Slack sends it again. Slash
        commands are answered in the ack by bolt.
        """
        with self._receiving:
            return await self._receive(request)

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            ingress.verify(self._signing_secret, request.headers, body, time.time())
        except ingress.Unauthorized as e:
            log.info("slack.unsigned_request why=%s", e)
            return web.json_response({"error": "invalid signature"}, status=401)
        try:
            req = ingress.parse(request.content_type, body)
        except ingress.BadRequest as e:
            log.info("slack.bad_request why=%s", e)
            return web.json_response({"error": "bad request"}, status=400)
        if req.kind == "url_verification":
            return web.json_response({"challenge": req.body["challenge"]})
        if req.kind == "ignored":
            return web.Response(status=200)
        if req.kind == "event":
            stored = await self._store(req.kind, req.body, req.text)
            return web.Response(status=200 if stored else 503)
        if req.kind == "interactive" and req.body.get("type") == "block_actions":
            stored = await self._store(req.kind, req.body, json.dumps(req.body))
            return web.Response(status=200 if stored else 503)
        bolt_request = AsyncBoltRequest(
            body=req.text, query=request.query_string, headers=dict(request.headers)
        )
        return await to_aiohttp_response(await self._app.async_dispatch(bolt_request))

    async def _store(self, kind: str, body: Mapping[str, Any], text: str) -> bool:
        """Puts an event or a button press in the inbox within the ack's budget; False
        when it could not be stored (the database is down or too slow): not acked."""
        event_id = _inbox_id(kind, body)
        if event_id is None or (kind == "event" and not self._worth_handling(body)):
            return True  # nothing the bot handles: acknowledged and dropped
        try:
            async with asyncio.timeout(ACK_BUDGET):
                new = await self._inbox.accept("slack", event_id, text)
        except (StoreUnavailable, TimeoutError) as e:
            log.warning("slack.not_stored event_id=%s why=%s", event_id, type(e).__name__)
            return False
        if new:
            self._worker.wake()
        else:
            log.info("slack.event_duplicate event_id=%s", event_id)
        return True

    async def _store_first(self, body: dict[str, Any], next: Any) -> BoltResponse:
        """bolt middleware (Socket Mode): an event or a button press is stored before
        the envelope is acknowledged; a non-200 answer leaves it unacknowledged, and
        Slack sends it again."""
        kind = {"event_callback": "event", "block_actions": "interactive"}.get(
            str(body.get("type"))
        )
        if kind is None:
            return await next()  # type: ignore[no-any-return]
        stored = await self._store(kind, body, json.dumps(body))
        return BoltResponse(status=200 if stored else 503, body="")

    def _worth_handling(self, envelope: Mapping[str, Any]) -> bool:
        """A person's message or edit (what `_deliver` handles); the bot's own posts and
        other bots' need not be stored at all."""
        event = envelope.get("event") or {}
        if event.get("type") != "message":
            return False
        event_id = str(envelope.get("event_id"))
        user = self._bot_user_id
        return (
            parse.human_message(event, user, event_id) is not None
            or parse.edited_message(event, user, event_id) is not None
        )

    async def _handle_stored(self, event: InboxEvent) -> None:
        """One stored event or button press, handled (the inbox worker's callback)."""
        body = json.loads(event.payload)
        if body.get("type") == "event_callback":
            inner = body.get("event") or {}
            if inner.get("type") == "message":
                external = parse.from_another_workspace(body, inner, self._home)
                await self._deliver(inner, event.event_id, external)
            return
        if body.get("type") == "block_actions":
            for action in parse.button_presses(body, self._home):
                if self._on_action is None:
                    raise Unavailable("the Slack platform is not started")
                await self._on_action(action)

    # --- outgoing

    async def post(self, message: Outgoing) -> MessageId:
        text = render_mrkdwn(message.body)
        kwargs: dict[str, Any] = {
            "channel": message.channel,
            "text": text,
            "unfurl_links": False,
            "unfurl_media": False,
            "link_names": False,
            "metadata": metadata(message),
        }
        if message.thread_root:
            kwargs["thread_ts"] = message.thread_root
        if message.actions:
            kwargs["blocks"] = blocks(text, message)
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
                if self._is_ours(msg) and parse.carries(msg, message):
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
        )

    async def update(self, channel: ChannelId, message_id: MessageId, body: Rich) -> None:
        await self._call(
            "chat.update",
            self._client.chat_update(
                channel=channel, ts=message_id, text=render_mrkdwn(body), blocks=[]
            ),
        )

    async def permalink(self, channel: ChannelId, message_id: MessageId) -> str:
        """`chat.getPermalink` (docs.slack.dev/reference/methods/chat.getPermalink): the
        link Slack's own "Copy link" gives, in the workspace's domain."""
        resp = await self._call(
            "chat.getPermalink",
            self._client.chat_getPermalink(channel=channel, message_ts=message_id),
        )
        link = _str(resp.get("permalink"))
        if link is None:
            raise Unavailable("slack chat.getPermalink answered without a permalink")
        return link

    async def respond(self, ctx: CommandContext, body: Rich) -> None:
        kwargs: dict[str, Any] = {
            "channel": ctx.channel,
            "user": ctx.user,
            "text": render_mrkdwn(body),
        }
        if ctx.thread_root:
            kwargs["thread_ts"] = ctx.thread_root
        await self._call("chat.postEphemeral", self._client.chat_postEphemeral(**kwargs))

    # --- user groups (bot.ports.UserGroups): `oncall.slack_usergroup`

    async def group_members(self, group: str) -> list[ChatUserId]:
        """usergroups.users.list (scope usergroups:read)."""
        resp = await self._call(
            "usergroups.users.list", self._client.usergroups_users_list(usergroup=group)
        )
        return [ChatUserId(str(u)) for u in resp.get("users") or []]

    async def set_group_members(self, group: str, members: Sequence[ChatUserId]) -> None:
        """usergroups.users.update (scope usergroups:write): `users` is the whole list."""
        await self._call(
            "usergroups.users.update",
            self._client.usergroups_users_update(usergroup=group, users=list(members)),
        )
        log.info("slack.usergroup_set group=%s members=%s", group, ",".join(members))

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
    ) -> AsyncSlackResponse:
        """One Web API call, its outcome recorded for `health()` and mapped to a port
        error by what a retry can do about it: Unavailable (retry; the outcome may be
        hidden), RateLimited (wait), CredentialsRefused (pause), PlatformRefused (fail)."""
        try:
            resp = await call
        except SlackApiError as e:
            error = self._classify(method, e)
            if isinstance(error, _Tolerated):
                return error.response
            raise error from e
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self._fail(f"{method}: {type(e).__name__}")
            raise Unavailable(f"slack {method}: {type(e).__name__}: {e}") from e
        self._ok()
        return resp

    def _classify(self, method: str, e: SlackApiError) -> Exception:
        status = e.response.status_code
        error = str(e.response.get("error", "unknown_error"))
        if error in _IDEMPOTENT_ERRORS:
            self._ok()
            return _Tolerated(e.response)
        if status == 429 or error in _RATE_ERRORS:
            wait = (
                timedelta(seconds=_retry_after(e.response.headers))
                if status == 429
                else RATE_LIMIT_FALLBACK
            )
            self._fail(f"{method}: rate limited")
            return RateLimited(self._now() + wait, method)
        if error in _AUTH_ERRORS:
            self._fail(f"{method}: {error}")
            log.warning("slack.credentials_refused method=%s error=%s", method, error)
            return CredentialsRefused(f"slack {method}: {error}")
        if error in _REFUSED_ERRORS:
            self._ok()  # Slack answered; the request itself was refused
            log.warning("slack.refused method=%s error=%s", method, error)
            return PlatformRefused(f"slack {method}: {error}")
        # A 5xx, a documented transient error, or one we do not know: retried, never
        # dropped (a post is looked for before it is sent again).
        why = error if error != "unknown_error" or status < 500 else f"HTTP {status}"
        self._fail(f"{method}: {why}")
        return Unavailable(f"slack {method}: {why}")

    def _ok(self) -> None:
        self._connected, self._error, self._failing_since = True, None, None

    def _fail(self, error: str) -> None:
        self._connected, self._error = False, error
        self._failing_since = self._failing_since or self._now()
        log.warning("slack.api_failed error=%s", error)

    def _is_ours(self, msg: Mapping[str, Any]) -> bool:
        bot_id, user = msg.get("bot_id"), msg.get("user")
        if bot_id is None and user is None:
            return True
        return (bot_id is not None and bot_id == self._bot_id) or (
            user is not None and user == self._bot_user_id
        )

    async def standing(self, channel: ChannelId, user: ChatUserId) -> Standing:
        """Membership of `channel` from conversations.members (scope channels:read or
        groups:read), kept for MEMBERS_TTL seconds so a burst of commands asks once.
        Slack has no power levels. A channel the bot cannot see raises PlatformRefused,
        which the core reads as "not a member"."""
        return Standing(member=user in await self._channel_members(channel))

    async def _channel_members(self, channel: ChannelId) -> frozenset[str]:
        now = time.monotonic()
        cached = self._members.get(channel)
        if cached is not None and now - cached[0] < MEMBERS_TTL:
            return cached[1]
        found: set[str] = set()
        cursor: str | None = None
        for _ in range(MEMBER_PAGES):
            resp = await self._call(
                "conversations.members",
                self._client.conversations_members(channel=channel, limit=1000, cursor=cursor),
            )
            found.update(str(m) for m in resp.get("members") or [])
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        members = frozenset(found)
        self._members[channel] = (now, members)
        return members

    # --- incoming

    def _register_listeners(self) -> None:
        # Events and button presses go to the inbox (handle_http, _store_first).
        self._app.command(self._command)(self._on_slash_command)

    async def _deliver(
        self, event: Mapping[str, Any], event_id: str, external: bool = False
    ) -> None:
        msg = parse.human_message(event, self._bot_user_id, event_id) or parse.edited_message(
            event, self._bot_user_id, event_id
        )
        if msg is None:
            return
        msg = replace(msg, external=external)
        if self._on_message is None or self._on_command is None:
            raise Unavailable("the Slack platform is not started")  # handled again later
        if not msg.edited:
            command = command_text(msg.text, self._mentions())
            if command is not None:
                ctx = replace(parse.command_context(event), external=external)
                answer = await self._answer(command, ctx)
                try:  # best effort: the command has run, a second run would repeat it
                    await self.respond(ctx, answer)
                except Exception as e:
                    log.warning("slack.respond_failed event_id=%s error=%s", event_id, e)
                return
            # What could be tweeted is what a reader of the message sees.
            files = tuple([await self._complete(f) for f in msg.files])
            msg = replace(msg, text=await self.reader_text(event), files=files)
        await self._on_message(msg)

    def _mentions(self) -> list[str]:
        """The bot as its plain-text mention (`<@U…>` reads `@U…`) and by its names, as
        people type it when the client made no mention of it (`@seva close`)."""
        ids = [f"@{self._bot_user_id}"] if self._bot_user_id else []
        return ids + [f"@{name}" for name in self._bot_names]

    async def reader_text(self, event: Mapping[str, Any]) -> str:
        """The message as its reader sees it (markup.py), people and channels by name."""
        for user_id in markup.user_ids(event) - self._people.keys():
            await self._learn_person(user_id)
        for channel_id in markup.channel_ids(event) - self._channel_names.keys():
            await self._learn_channel(channel_id)
        return markup.reader_text(event, self._people.get, self._channel_names.get)

    async def _learn_person(self, user_id: str) -> None:
        """users.info (scope users:read): the display name, else the real name."""
        try:
            resp = await self._call("users.info", self._client.users_info(user=user_id))
        except (PlatformRefused, Unavailable, RateLimited) as e:
            log.warning("slack.user_unknown user=%s error=%s", user_id, e)
            return
        name = _display_name(resp.get("user") or {})
        if name:
            if len(self._people) >= _NAMES_KEPT:
                self._people.clear()
            self._people[user_id] = name

    async def _learn_channel(self, channel_id: str) -> None:
        try:
            resp = await self._call(
                "conversations.info", self._client.conversations_info(channel=channel_id)
            )
        except (PlatformRefused, Unavailable, RateLimited):
            return
        name = (resp.get("channel") or {}).get("name")
        if name:
            self._channel_names[channel_id] = str(name)

    async def _learn_bot_names(self, bot_user_id: str) -> None:
        try:
            resp = await self._call("users.info", self._client.users_info(user=bot_user_id))
        except (PlatformRefused, Unavailable, RateLimited):
            return
        user = resp.get("user") or {}
        profile = user.get("profile") or {}
        for name in (profile.get("display_name"), profile.get("real_name"), user.get("name")):
            if name and str(name) not in self._bot_names:
                self._bot_names.append(str(name))

    async def _complete(self, file: ChatFile) -> ChatFile:
        """A file the event gave as a stub (`file_access: check_file_info`: Slack Connect,
        some DMs; docs.slack.dev/apis/slack-connect) completed from files.info, so that
        what it is decides whether it can be tweeted."""
        if file.mimetype:
            return file
        try:
            resp = await self._call("files.info", self._client.files_info(file=file.id))
        except (PlatformRefused, Unavailable, RateLimited) as e:
            log.warning("slack.file_unknown file=%s error=%s", file.id, e)
            return file
        info = resp.get("file") or {}
        return ChatFile(
            file.id,
            str(info.get("name") or info.get("title") or file.name),
            str(info.get("mimetype") or ""),
            int(info.get("size") or 0),
        )

    async def fetch_file(self, file: ChatFile) -> bytes:
        """A file an agent attached, for its reply tweet: `files.info` (which also fills
        in the stub Slack sends for some files, `file_access: check_file_info`), then its
        `url_private_download` with the bot token, which needs `files:read`. Without it
        Slack answers a redirect to a login page, not 401 (facts-issue7 section 10), so
        anything but the file's bytes is refused; the token goes only to Slack's hosts."""
        try:
            resp = await self._call("files.info", self._client.files_info(file=file.id))
        except PlatformRefused as e:
            if "missing_scope" in str(e):
                raise PlatformRefused(
                    "the Slack app lacks the files:read scope: add it and reinstall the app"
                ) from e
            raise
        info = resp.get("file") or {}
        url = str(info.get("url_private_download") or info.get("url_private") or "")
        if not url:
            raise PlatformRefused(f"Slack gave no download address for {file.name}")
        if not self._slack_host(url):
            raise PlatformRefused(f"{file.name} is not on a Slack address; not fetched")
        if int(info.get("size") or file.size) > MAX_IMAGE_BYTES:
            raise PlatformRefused(f"{file.name} is larger than X takes")
        session = self._session
        if session is None:
            raise Unavailable("the Slack platform is not started")
        headers = {"Authorization": f"Bearer {self._client.token}"}
        try:
            async with session.get(
                url, headers=headers, allow_redirects=False, timeout=aiohttp.ClientTimeout(30)
            ) as r:
                if r.status != 200 or r.content_type == "text/html":
                    raise PlatformRefused(
                        f"Slack did not hand over {file.name} (HTTP {r.status}, "
                        f"{r.content_type}): is the files:read scope granted?"
                    )
                data = await r.content.read(MAX_IMAGE_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise Unavailable(f"slack file {file.id}: {type(e).__name__}") from e
        if len(data) > MAX_IMAGE_BYTES:
            raise PlatformRefused(f"{file.name} is larger than X takes")
        return data

    def _slack_host(self, url: str) -> bool:
        host = (urlsplit(url).hostname or "").lower()
        api_host = (urlsplit(str(self._client.base_url)).hostname or "").lower()
        return host == "slack.com" or host.endswith(".slack.com") or host == api_host

    async def find_user(self, name: str) -> ChatUserId | None:
        """A workspace member by user name, display name or real name (`assign 4
        @vikram`, typed without Slack's autocomplete), from users.list, cached."""
        wanted = name.strip().lstrip("@＠").casefold()
        if not wanted:
            return None
        now = time.monotonic()
        if now - self._directory_at > _DIRECTORY_TTL:
            self._directory = await self._list_users()
            self._directory_at = now
        found = [user_id for user_id, names in self._directory if wanted in names]
        return ChatUserId(found[0]) if len(found) == 1 else None

    async def _list_users(self) -> list[tuple[str, frozenset[str]]]:
        out: list[tuple[str, frozenset[str]]] = []
        cursor: str | None = None
        for _ in range(50):  # 10,000 people
            resp = await self._call(
                "users.list", self._client.users_list(limit=_PAGE_SIZE, cursor=cursor)
            )
            for user in resp.get("members") or []:
                if user.get("deleted") or user.get("is_bot") or not user.get("id"):
                    continue
                profile = user.get("profile") or {}
                names = {
                    str(n).casefold()
                    for n in (
                        user.get("name"),
                        user.get("real_name"),
                        profile.get("display_name"),
                        profile.get("real_name"),
                    )
                    if n
                }
                out.append((str(user["id"]), frozenset(names)))
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                break
        return out

    async def _answer(self, command: str, ctx: CommandContext) -> Rich:
        on_command = self._on_command
        if on_command is None:
            return Rich.of("The bot is not ready yet; try again in a moment.")
        try:
            return await on_command(command, ctx)
        except Exception:
            log.exception("slack.command_failed channel=%s user=%s", ctx.channel, ctx.user)
            return Rich.of("Sorry, that command failed. Please try again.")

    async def _on_slash_command(
        self, command: dict[str, Any], ack: AsyncAck, respond: AsyncRespond
    ) -> None:
        typed, ctx = parse.slash_command(command, self._home)
        text = slash_command_text(typed)
        task = self._spawn(self._answer(text, ctx))
        try:
            answer = await asyncio.wait_for(asyncio.shield(task), _SLASH_ANSWER_BUDGET)
        except TimeoutError:
            # Slack gives up after 3 s: ack now, send the answer when it is ready.
            await ack(response_type="ephemeral", text="Working on it…")
            task.add_done_callback(lambda t: self._late_answer(t, ctx, respond))
            return
        await ack(response_type="ephemeral", text=render_mrkdwn(answer))

    def _late_answer(
        self, task: asyncio.Task[Rich], ctx: CommandContext, respond: AsyncRespond
    ) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        self._spawn(self._respond_late(ctx, task.result(), respond))

    async def _respond_late(self, ctx: CommandContext, body: Rich, respond: AsyncRespond) -> None:
        """Through the command's response_url (bolt's respond), which reaches the asker
        wherever they typed it, a DM or a channel the bot is not in, where
        chat.postEphemeral fails (maintainer answer in slackapi/bolt-js#365); the
        ephemeral is the fallback should the URL have expired."""
        text = render_mrkdwn(body)
        try:
            sent = await respond(text=text, response_type="ephemeral", replace_original=False)
            if sent.status_code == 200:
                return
            log.warning("slack.response_url_failed status=%s", sent.status_code)
        except Exception as e:
            log.warning("slack.response_url_failed error=%s", type(e).__name__)
        try:
            await self.respond(ctx, body)
        except Exception:
            log.exception("slack.respond_failed channel=%s user=%s", ctx.channel, ctx.user)

    def _spawn(self, coro: Awaitable[T]) -> asyncio.Task[T]:
        task: asyncio.Task[T] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


# --- helpers --------------------------------------------------------------------


class _Tolerated(Exception):
    """An error that means "already in the state you asked for" (a reaction there)."""

    def __init__(self, response: Any) -> None:
        super().__init__("tolerated")
        self.response = response


def _thread_of(event: InboxEvent) -> str:
    """The order key of a stored event: its channel and thread (a message, its edit and a
    button pressed under it are handled in order; other threads meanwhile)."""
    try:
        body = json.loads(event.payload)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    inner = body.get("event")
    if isinstance(inner, dict):
        msg = inner.get("message") or inner.get("previous_message") or inner
        msg = msg if isinstance(msg, dict) else inner
        thread = msg.get("thread_ts") or msg.get("ts") or inner.get("ts")
        return f"{inner.get('channel')}:{thread}"
    channel, container = body.get("channel"), body.get("container")
    if isinstance(channel, dict) and isinstance(container, dict):
        thread = container.get("thread_ts") or container.get("message_ts")
        return f"{channel.get('id')}:{thread}"
    return ""


def _inbox_id(kind: str, body: Mapping[str, Any]) -> str | None:
    """The id an event or a button press is stored under, so that Slack's redelivery of
    it is known: the event_id; for a press, the interaction's trigger_id (one per
    click). None for what the bot does not handle."""
    if kind == "event":
        return str(body["event_id"])
    if body.get("type") == "block_actions" and isinstance(body.get("trigger_id"), str):
        return f"action:{body['trigger_id']}"
    return None


class _SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def _str(value: object) -> str | None:
    return str(value) if value else None


def _display_name(user: Mapping[str, Any]) -> str | None:
    """What Slack shows for a person: the display name, which may be empty, else the
    real name (users.info, docs.slack.dev/reference/methods/users.info)."""
    profile = user.get("profile") or {}
    for name in (
        profile.get("display_name"),
        profile.get("real_name"),
        user.get("real_name"),
        user.get("name"),
    ):
        if name:
            return str(name)
    return None


def _retry_after(headers: Mapping[str, Any]) -> float:
    for key, value in headers.items():
        if key.lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) else value
            try:
                return max(float(raw), 0.0)
            except (TypeError, ValueError):
                break
    return 1.0


__all__ = ["SlackPlatform", "check"]
