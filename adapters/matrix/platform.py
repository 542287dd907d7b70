"""Matrix as a `ChatPlatform`, on matrix-nio's AsyncClient, for unencrypted rooms only.

The adapter translates at the edge: it drops its own events, edits, notices from
other bots, backlog and sync replays before anything reaches the core, and it
renders `Rich` so that untrusted text can never ping a room or forge a link.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import json
import logging
import random
import re
import urllib.parse
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import ClientError
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    JoinedRoomsResponse,
    JoinError,
    LoginResponse,
    MessageDirection,
    RoomGetEventResponse,
    RoomGetStateResponse,
    RoomMessagesResponse,
    RoomSendResponse,
    SyncResponse,
    WhoamiResponse,
)
from nio.api import RelationshipType

from bot.addressing import command_text
from bot.domain import (
    Action,
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

KEY_FIELD = "org.sevabridge.key"
TICKET_FIELD = "org.sevabridge.ticket"
TWEET_FIELD = "org.sevabridge.tweet_id"
ACTIONS_FIELD = "org.sevabridge.actions"
HTML_FORMAT = "org.matrix.custom.html"

# Room versions where power comes only from m.room.power_levels; from v12 ("hydra")
# on, the creators are above every level and are not listed in `users`.
LEGACY_ROOM_VERSIONS = frozenset(str(v) for v in range(1, 12))
CREATOR_POWER_LEVEL = 2**53 - 1  # above any level canonical JSON can express

# The reaction that confirms each action, in order; the first also accepts aliases.
ACTION_KEYS = ("✅", "❌", "3️⃣", "4️⃣", "5️⃣")
CONFIRM_ALIASES = frozenset({"✅", "✔", "☑", "👍"})
# How a ticket state shows on its thread root; states mapped to None show nothing.
# One mark at a time: the root shows the ticket's latest state.
STATE_MARKS: dict[str, str | None] = {
    ThreadMark.CLOSED: "✅",
    ThreadMark.CLAIMED: "👀",
    ThreadMark.ANSWERED: "💬",
    ThreadMark.ESCALATED: "🚨",
    ThreadMark.OPEN: None,
}

_ROOM_PING = re.compile(r"@(?=room)", re.IGNORECASE)
_USER_ID = re.compile(r"^@[^:\s]+:[^\s]+$")
_EMOJI_NOISE = re.compile("[\ufe0e\ufe0f\U0001f3fb-\U0001f3ff]")
_SYNC_ERRORS = (ClientError, TimeoutError, OSError)


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Rendered:
    body: str
    formatted_body: str
    user_ids: list[str]


def render(rich: Rich) -> Rendered:
    """Plain `body`, HTML `formatted_body` and the users to mention.

    Every piece of text is escaped and "@room" is broken with a word joiner, so a
    citizen's words can neither ping the room nor inject markup; only `Mention`
    segments produce pills and entries in `m.mentions`.
    """
    body: list[str] = []
    out: list[str] = []
    users: list[str] = []
    for seg in rich.segments:
        match seg:
            case Text(text=t, bold=bold):
                body.append(_defuse(t))
                escaped = _html_text(t)
                out.append(f"<strong>{escaped}</strong>" if bold else escaped)
            case Mention(user=u) if _USER_ID.match(u):
                body.append(u)
                href = html.escape("https://matrix.to/#/" + urllib.parse.quote(u, safe="@:"))
                out.append(f'<a href="{href}">{html.escape(u)}</a>')
                if u not in users:
                    users.append(u)
            case Mention(user=u):
                body.append(_defuse(u))
                out.append(_html_text(u))
            case Link(url=url, label=label):
                shown = label or url
                body.append(_defuse(f"{shown} ({url})" if shown != url else url))
                if urllib.parse.urlsplit(url).scheme.lower() in ("http", "https"):
                    out.append(f'<a href="{html.escape(url)}">{_html_text(shown)}</a>')
                else:
                    out.append(_html_text(f"{shown} ({url})" if shown != url else url))
            case Quote(text=t):
                lines = t.splitlines() or [""]
                body.append(_defuse("\n".join("> " + line for line in lines)))
                out.append("<blockquote>" + _html_text(t) + "</blockquote>")
    return Rendered("".join(body), "".join(out), users)


def _defuse(text: str) -> str:
    return _ROOM_PING.sub("@\u2060", text)


def _html_text(text: str) -> str:
    return html.escape(_defuse(text)).replace("\n", "<br>")


def txn_id(key: str) -> str:
    """Deterministic per `Outgoing.key`, so Synapse drops a resend after a crash."""
    return "seva-" + hashlib.sha256(key.encode()).hexdigest()[:32]


_PILL = re.compile(
    r'<a\s+href="https://matrix\.to/#/(@[^"/?]+)"[^>]*>.*?</a>', re.IGNORECASE | re.S
)
_TAG = re.compile(r"<[^>]+>")


def _with_user_ids(body: str, content: dict[str, Any]) -> str:
    """A command's text with mention pills as user ids (`!assign 5 @asha:hs`).

    Element writes a pill's display name into `body`; the id is only in the HTML.
    """
    formatted = content.get("formatted_body")
    if content.get("format") != "org.matrix.custom.html" or not isinstance(formatted, str):
        return body
    if not _PILL.search(formatted):
        return body
    text = _PILL.sub(lambda m: urllib.parse.unquote(m.group(1)), formatted)
    return html.unescape(_TAG.sub("", text.replace("<br>", "\n").replace("<br/>", "\n")))


def _normalise_key(key: str) -> str:
    return _EMOJI_NOISE.sub("", key)


def _thread_relation(root: str) -> dict[str, Any]:
    return {
        "rel_type": "m.thread",
        "event_id": root,
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": root},
    }


def _strip_reply_fallback(body: str) -> str:
    lines = body.split("\n")
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    if 0 < i < len(lines) and lines[i] == "":
        return "\n".join(lines[i + 1 :])
    return body


async def check(
    homeserver: str, user_id: str, *, access_token: str | None, password: str | None
) -> str:
    """`seva check --online`: `whoami` (after logging in, with a password); who it is.

    Raises PlatformRefused or Unavailable naming what to check.
    """
    client = AsyncClient(homeserver, user_id)
    try:
        if access_token is not None:
            client.access_token = access_token
        else:
            login = await client.login(password or "")
            if not getattr(login, "access_token", None):
                raise PlatformRefused(
                    f"login failed ({getattr(login, 'message', login)}); "
                    "check MATRIX_USER_ID and MATRIX_PASSWORD"
                )
        who = await client.whoami()
        if not isinstance(who, WhoamiResponse):
            raise PlatformRefused(
                f"whoami failed ({getattr(who, 'message', who)}); "
                "check MATRIX_HOMESERVER and MATRIX_ACCESS_TOKEN"
            )
        if user_id and who.user_id != user_id:
            raise PlatformRefused(
                f"the token belongs to {who.user_id}, not MATRIX_USER_ID {user_id}"
            )
        return str(who.user_id)
    except PlatformRefused:
        raise
    except Exception as e:
        raise Unavailable(f"{homeserver} unreachable ({type(e).__name__})") from None
    finally:
        await client.close()


class MatrixPlatform:
    """One Matrix account serving a fixed set of rooms."""

    name: Platform = "matrix"
    private_responses = False

    def __init__(
        self,
        homeserver: str,
        user_id: str,
        *,
        rooms: Iterable[ChannelId],
        state: KeyValue,
        access_token: str | None = None,
        password: str | None = None,
        clock: Clock | None = None,
        device_name: str = "Seva Bridge",
        sync_timeout_ms: int = 30_000,
        max_backoff_seconds: float = 60.0,
        history_pages: int = 5,
        timeline_limit: int = 50,
    ) -> None:
        if (access_token is None) == (password is None):
            raise ValueError("give exactly one of access_token and password")
        self.homeserver = homeserver.rstrip("/")
        self.user_id = user_id
        self.rooms: tuple[ChannelId, ...] = tuple(dict.fromkeys(rooms))
        self._kv = state
        self._token = access_token
        self._password = password
        self._clock: Clock = clock or SystemClock()
        self._device_name = device_name
        self._sync_timeout_ms = sync_timeout_ms
        self._max_backoff = max_backoff_seconds
        self._history_pages = history_pages
        self._timeline_limit = timeline_limit
        self._client: AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._since: str | None = None
        self._creators: dict[str, tuple[frozenset[str], str]] = {}  # creators, room version
        self._on_message: MessageHandler | None = None
        self._on_command: CommandHandler | None = None
        self._on_action: ActionHandler | None = None
        self._connected = False
        self._last_sync_at: datetime | None = None
        self._error: str | None = None
        self._room_problems = ""

    # --- ChatPlatform

    async def start(
        self,
        on_message: MessageHandler,
        on_command: CommandHandler,
        on_action: ActionHandler,
    ) -> None:
        """Logs in, joins the rooms, refuses encrypted ones, then syncs in the background.

        On the very first start the backlog is skipped; later starts resume from the
        stored sync token, so events sent while the bot was down are delivered once.
        """
        if self._task is not None:
            raise RuntimeError("MatrixPlatform.start() called twice without stop()")
        self._on_message, self._on_command, self._on_action = on_message, on_command, on_action
        self._stopping = asyncio.Event()
        client = self._client = AsyncClient(
            self.homeserver,
            self.user_id,
            config=AsyncClientConfig(
                max_limit_exceeded=3,
                max_timeouts=2,
                encryption_enabled=False,
                store_sync_tokens=False,
            ),
        )
        try:
            await self._login(client)
            await self._join_rooms(client)
            since = self._kv.get(self._k("sync_token"))
            batches = await self._initial_syncs(client, since)
            self._refuse_encrypted(client)
            await self._learn_creators(client)
            known = set(json.loads(self._kv.get(self._k("rooms")) or "[]"))
            for token, batch in batches:
                await self._dispatch(batch, token, skip_rooms=set(self.rooms) - known)
            self._kv.put(self._k("rooms"), json.dumps(sorted(set(self.rooms) | known)))
            self._advance(batches[-1][1].next_batch)
        except BaseException as e:
            self._health(connected=False, error=self._scrub(e))
            await client.close()
            self._client = None
            if isinstance(e, ClientError | TimeoutError):
                raise Unavailable(f"Matrix homeserver {self.homeserver}: {self._error}") from None
            raise
        self._health(connected=True)
        _log(logging.INFO, "matrix.started", user=self.user_id, rooms=list(self.rooms))
        self._task = asyncio.create_task(self._run(client), name="matrix-sync")

    async def stop(self) -> None:
        """Ends the sync loop (finishing the batch in hand) and closes the client."""
        self._stopping.set()
        running = self._client is not None
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=10)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._connected = False
        if running:
            _log(logging.INFO, "matrix.stopped", user=self.user_id)

    def health(self) -> dict[str, object]:
        return {
            "connected": self._connected,
            "last_sync_at": self._last_sync_at.isoformat() if self._last_sync_at else None,
            "error": self._error,
        }

    async def post(self, message: Outgoing) -> MessageId:
        client = self._usable(message.channel)
        rendered = render(message.body)
        body, formatted = rendered.body, rendered.formatted_body
        pairs = list(zip(ACTION_KEYS, message.actions, strict=False))
        if len(message.actions) > len(pairs):
            _log(logging.WARNING, "matrix.actions_dropped", key=message.key, kept=len(pairs))
        if pairs:
            lines = [f"React with {key} to {action.label.lower()}." for key, action in pairs]
            body += "\n\n" + "\n".join(lines)
            formatted += "<br><br>" + "<br>".join(f"<em>{html.escape(x)}</em>" for x in lines)
        content: dict[str, Any] = {
            "msgtype": "m.text",
            "body": body,
            "format": HTML_FORMAT,
            "formatted_body": formatted,
            "m.mentions": {"user_ids": rendered.user_ids},
            KEY_FIELD: message.key,
        }
        if message.ticket is not None:
            content[TICKET_FIELD] = message.ticket
        if message.tweet_id is not None:
            content[TWEET_FIELD] = message.tweet_id
        if pairs:
            content[ACTIONS_FIELD] = [
                {"key": key, "id": a.id, "value": a.value} for key, a in pairs
            ]
        if message.thread_root:
            content["m.relates_to"] = _thread_relation(message.thread_root)
        event_id = await self._send(
            client, message.channel, "m.room.message", content, txn_id(message.key)
        )
        if pairs:
            self._kv.put(self._k(f"actions:{event_id}"), json.dumps(content[ACTIONS_FIELD]))
        _log(logging.INFO, "matrix.posted", room=message.channel, key=message.key, event=event_id)
        return MessageId(event_id)

    async def find(self, message: Outgoing) -> MessageId | None:
        """Looks back through a bounded number of pages of the bot's own messages."""
        client = self._usable(message.channel)
        message_filter = {"types": ["m.room.message"], "senders": [self.user_id]}
        start: str | None = None
        for _ in range(self._history_pages):
            try:
                resp = await client.room_messages(
                    message.channel,
                    start=start,
                    direction=MessageDirection.back,
                    limit=100,
                    message_filter=message_filter,
                )
            except _SYNC_ERRORS as e:
                raise Unavailable(f"Matrix /messages: {self._scrub(e)}") from None
            if not isinstance(resp, RoomMessagesResponse):
                raise self._error_for(resp, "read history of", message.channel)
            for event in resp.chunk:
                src = getattr(event, "source", {})
                if src.get("sender") == self.user_id and (
                    (src.get("content") or {}).get(KEY_FIELD) == message.key
                ):
                    return MessageId(src["event_id"])
            if not resp.chunk or not resp.end or resp.end == start:
                break
            start = resp.end
        return None

    async def mark(self, thread: ThreadRef, state: ThreadMark) -> None:
        """Shows the state as the bot's reaction on the root; repeating it changes nothing."""
        if state not in STATE_MARKS:
            _log(logging.WARNING, "matrix.mark.unknown_state", state=state, root=thread.root)
            return
        want = STATE_MARKS[state]
        client = self._usable(thread.channel)
        ours = await self._own_marks(client, thread)
        for key, event_id in ours:
            if key != want:
                resp = await client.room_redact(thread.channel, event_id, reason=f"ticket {state}")
                if isinstance(resp, ErrorResponse):
                    raise self._error_for(resp, "remove a reaction in", thread.channel)
        if want is not None and all(key != want for key, _ in ours):
            content = {
                "m.relates_to": {"rel_type": "m.annotation", "event_id": thread.root, "key": want}
            }
            try:
                await self._send(client, thread.channel, "m.reaction", content, None)
            except Unavailable as e:
                if "M_DUPLICATE_ANNOTATION" not in str(e):
                    raise
        _log(logging.INFO, "matrix.marked", room=thread.channel, root=thread.root, state=state)

    async def update(self, channel: ChannelId, message_id: MessageId, body: Rich) -> None:
        """An `m.replace` edit of our own message; Element shows the new text in place."""
        client = self._usable(channel)
        rendered = render(body)
        new = {
            "msgtype": "m.text",
            "body": rendered.body,
            "format": HTML_FORMAT,
            "formatted_body": rendered.formatted_body,
            "m.mentions": {"user_ids": rendered.user_ids},
        }
        content: dict[str, Any] = {
            **new,
            "body": "* " + rendered.body,
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": message_id},
        }
        await self._send(client, channel, "m.room.message", content, None)

    async def respond(self, ctx: CommandContext, body: Rich) -> None:
        client = self._usable(ctx.channel)
        rendered = render(body)
        content: dict[str, Any] = {
            "msgtype": "m.notice",
            "body": rendered.body,
            "format": HTML_FORMAT,
            "formatted_body": rendered.formatted_body,
            "m.mentions": {"user_ids": rendered.user_ids},
        }
        if ctx.thread_root:
            content["m.relates_to"] = _thread_relation(ctx.thread_root)
        await self._send(client, ctx.channel, "m.room.message", content, None)

    # --- login, rooms, sync

    async def _login(self, client: AsyncClient) -> None:
        if self._token is not None:
            client.access_token = self._token
            who = await client.whoami()
            if not isinstance(who, WhoamiResponse):
                raise self._error_for(who, "accept the access token of", self.user_id)
            if who.user_id != self.user_id:
                raise PlatformRefused(
                    f"MATRIX_ACCESS_TOKEN belongs to {who.user_id}, not {self.user_id}"
                )
            client.user_id = who.user_id
            client.device_id = who.device_id or ""
        else:
            assert self._password is not None
            client.device_id = self._kv.get(self._k("device_id")) or ""
            resp = await client.login(self._password, device_name=self._device_name)
            if not isinstance(resp, LoginResponse):
                raise self._error_for(resp, "log in as", self.user_id)
        if client.device_id:
            self._kv.put(self._k("device_id"), client.device_id)
        _log(logging.INFO, "matrix.logged_in", user=self.user_id, device=client.device_id)

    async def _join_rooms(self, client: AsyncClient) -> None:
        joined = await client.joined_rooms()
        if not isinstance(joined, JoinedRoomsResponse):
            raise Unavailable(f"Matrix joined_rooms: {joined}")
        for room_id in self.rooms:
            if room_id in joined.rooms:
                continue
            resp = await client.join(room_id)
            if isinstance(resp, JoinError):
                raise PlatformRefused(
                    f"cannot join Matrix room {room_id} as {self.user_id}: {resp.message} "
                    "(invite the bot or make the room joinable)"
                )
            _log(logging.INFO, "matrix.joined", room=room_id)

    async def _initial_syncs(
        self, client: AsyncClient, since: str | None
    ) -> list[tuple[str | None, SyncResponse]]:
        """Full state, then more syncs until every room shows (a fresh join can lag).

        Nothing is dispatched yet: encrypted rooms must be refused first.
        """
        batches: list[tuple[str | None, SyncResponse]] = []
        token = since
        for attempt in range(5):
            resp = await self._sync(
                client, since=token, full_state=attempt == 0, wait_ms=0 if attempt == 0 else 1000
            )
            batches.append((token, resp))
            token = resp.next_batch
            missing = [r for r in self.rooms if r not in client.rooms]
            if not missing:
                return batches
            _log(logging.INFO, "matrix.rooms_not_synced_yet", rooms=missing, attempt=attempt)
        raise Unavailable(f"Matrix rooms {missing} joined but not visible in sync yet")

    async def _learn_creators(self, client: AsyncClient) -> None:
        """Reads m.room.create where sync left it out (Synapse does in v12 rooms)."""
        for room_id in self.rooms:
            if room_id in self._creators:
                continue
            resp = await client.room_get_state(room_id)
            if isinstance(resp, RoomGetStateResponse):
                self._note_creators(room_id, resp.events)
            else:
                _log(logging.WARNING, "matrix.room_state_failed", room=room_id, error=str(resp))

    def _refuse_encrypted(self, client: AsyncClient) -> None:
        for room_id in self.rooms:
            room = client.rooms.get(room_id)
            if room is not None and room.encrypted:
                raise PlatformRefused(
                    f"Matrix room {room_id} is end-to-end encrypted; Seva Bridge does not "
                    "support end-to-end encryption, so it will not read or post there. "
                    "Use an unencrypted room."
                )

    def _sync_filter(self) -> dict[str, Any]:
        nothing = {"not_types": ["*"]}
        return {
            "presence": nothing,
            "account_data": nothing,
            "room": {
                "rooms": list(self.rooms),
                "timeline": {"limit": self._timeline_limit},
                "state": {"lazy_load_members": True},
                "ephemeral": nothing,
                "account_data": nothing,
            },
        }

    async def _sync(
        self, client: AsyncClient, since: str | None, full_state: bool, wait_ms: int
    ) -> SyncResponse:
        resp = await client.sync(
            timeout=wait_ms, sync_filter=self._sync_filter(), since=since, full_state=full_state
        )
        if not isinstance(resp, SyncResponse):
            raise self._error_for(resp, "sync", self.homeserver)
        return resp

    async def _run(self, client: AsyncClient) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                resp = await self._sync_or_stop(client)
                if resp is None:
                    break
                self._health(connected=True)
                failures = 0
                await self._after_sync(client, resp)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                failures += 1
                delay = min(self._max_backoff, 0.5 * 2 ** (failures - 1))
                delay *= 0.5 + random.random() / 2
                if isinstance(e, RateLimited):
                    delay = max(delay, (e.until - self._clock.now()).total_seconds())
                self._health(connected=False, error=self._scrub(e))
                _log(
                    logging.WARNING,
                    "matrix.sync.failed",
                    error=self._scrub(e),
                    failures=failures,
                    retry_in=round(delay, 2),
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()

    async def _sync_or_stop(self, client: AsyncClient) -> SyncResponse | None:
        """The next sync, or None once `stop()` is called while waiting for it."""
        sync = asyncio.ensure_future(
            self._sync(client, since=self._since, full_state=False, wait_ms=self._sync_timeout_ms)
        )
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({sync, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not sync.done():
                sync.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sync
        return None if sync.cancelled() else sync.result()

    async def _after_sync(self, client: AsyncClient, resp: SyncResponse) -> None:
        for room_id in resp.rooms.invite:
            if room_id in self.rooms:
                joined = await client.join(room_id)
                ok = not isinstance(joined, JoinError)
                _log(logging.INFO, "matrix.rejoined", room=room_id, ok=ok)
        await self._dispatch(resp, self._since)
        self._advance(resp.next_batch)
        problems = []
        for room_id in self.rooms:
            room = client.rooms.get(room_id)
            if room_id in resp.rooms.leave:
                problems.append(f"the bot left or was removed from room {room_id}")
            elif room is not None and room.encrypted:
                problems.append(f"room {room_id} became encrypted; not posting there")
        if problems and "; ".join(problems) != self._room_problems:
            _log(logging.ERROR, "matrix.rooms_unusable", problems=problems)
        self._room_problems = "; ".join(problems)
        if problems:
            self._error = self._room_problems

    def _advance(self, next_batch: str) -> None:
        """Persists the token only after the batch was handled: a crash replays, never loses."""
        self._since = next_batch
        self._kv.put(self._k("sync_token"), next_batch)

    async def _dispatch(
        self, resp: SyncResponse, since: str | None, skip_rooms: AbstractSet[str] = frozenset()
    ) -> None:
        for room_id, info in resp.rooms.join.items():
            if room_id not in self.rooms:
                continue
            self._note_creators(room_id, [e.source for e in [*info.state, *info.timeline.events]])
            if since is None or room_id in skip_rooms:
                continue  # backlog
            events = [e.source for e in info.timeline.events]
            if info.timeline.limited and info.timeline.prev_batch:
                events = await self._gap(room_id, info.timeline.prev_batch, since) + events
            for event in events:
                await self._handle(room_id, event)

    async def _gap(self, room_id: str, prev_batch: str, since: str) -> list[dict[str, Any]]:
        """Events a limited sync left out between `since` and the timeline, oldest first."""
        assert self._client is not None
        found: list[dict[str, Any]] = []
        start = prev_batch
        for _ in range(self._history_pages * 4):
            resp = await self._client.room_messages(
                room_id, start=start, end=since, direction=MessageDirection.back, limit=100
            )
            if not isinstance(resp, RoomMessagesResponse):
                _log(logging.WARNING, "matrix.gap.failed", room=room_id, error=str(resp))
                break
            found.extend(e.source for e in resp.chunk)
            if not resp.chunk or not resp.end or resp.end == start:
                break
            start = resp.end
        _log(logging.INFO, "matrix.gap.filled", room=room_id, events=len(found))
        return list(reversed(found))

    def _note_creators(self, room_id: str, events: Iterable[dict[str, Any]]) -> None:
        for src in events:
            if src.get("type") == "m.room.create" and src.get("state_key") == "":
                content = src.get("content") or {}
                extra = content.get("additional_creators") or []
                creators = frozenset({str(src.get("sender", "")), *map(str, extra)})
                self._creators[room_id] = (creators, str(content.get("room_version", "1")))

    # --- incoming events

    async def _handle(self, room_id: str, event: dict[str, Any]) -> None:
        event_id = event.get("event_id")
        sender = event.get("sender")
        kind = event.get("type")
        content = event.get("content") or {}
        if not isinstance(event_id, str) or not isinstance(sender, str):
            return
        if sender == self.user_id or kind not in ("m.room.message", "m.reaction"):
            return
        if kind == "m.room.message" and not self._is_human_text(content):
            return
        if self._kv.was_seen("matrix", event_id):
            _log(logging.DEBUG, "matrix.replay_skipped", event=event_id)
            return
        try:
            if kind == "m.reaction":
                await self._on_reaction(room_id, sender, content)
            else:
                await self._on_text(room_id, event_id, sender, content)
        except Exception:
            log.exception(
                "matrix.handler_failed",
                extra={"event": "matrix.handler_failed", "fields": {"event_id": event_id}},
            )
        # Recorded once handled: a crash in between replays the event (the core's
        # constraints make that harmless) instead of losing it.
        self._kv.first_sight("matrix", event_id)

    @staticmethod
    def _is_human_text(content: dict[str, Any]) -> bool:
        relates = content.get("m.relates_to") or {}
        return (
            content.get("msgtype") == "m.text"
            and isinstance(content.get("body"), str)
            and relates.get("rel_type") != "m.replace"
            and "m.new_content" not in content
        )

    async def _on_text(
        self, room_id: str, event_id: str, sender: str, content: dict[str, Any]
    ) -> None:
        relates = content.get("m.relates_to") or {}
        root = relates.get("event_id") if relates.get("rel_type") == "m.thread" else None
        body = str(content["body"])
        if "m.in_reply_to" in relates and not relates.get("is_falling_back"):
            body = _strip_reply_fallback(body)
        thread_root = MessageId(root) if isinstance(root, str) else None
        command = command_text(_with_user_ids(body, content), [self.user_id])
        if command is not None:
            ctx = CommandContext("matrix", ChannelId(room_id), ChatUserId(sender), thread_root)
            assert self._on_command is not None
            _log(logging.INFO, "matrix.command", room=room_id, sender=sender, event=event_id)
            try:
                answer = await self._on_command(command, ctx)
            except Exception:
                await self.respond(ctx, Rich.of("Sorry, that command failed. Try again later."))
                raise
            await self.respond(ctx, answer)
            return
        assert self._on_message is not None
        await self._on_message(
            ChatMessage(
                platform="matrix",
                channel=ChannelId(room_id),
                id=MessageId(event_id),
                sender=ChatUserId(sender),
                text=body.strip(),
                thread_root=thread_root,
                event_id=event_id,
                power_level=self.power_level(room_id, sender),
            )
        )

    async def _on_reaction(self, room_id: str, sender: str, content: dict[str, Any]) -> None:
        relates = content.get("m.relates_to") or {}
        target, key = relates.get("event_id"), relates.get("key")
        if relates.get("rel_type") != "m.annotation" or not isinstance(target, str):
            return
        key = _normalise_key(str(key))
        wanted = {_normalise_key(k) for k in ACTION_KEYS}
        if key not in wanted and key not in CONFIRM_ALIASES:
            return
        actions = await self._actions_of(room_id, target)
        chosen: Action | None = None
        for entry in actions:
            entry_key = _normalise_key(entry["key"])
            if key == entry_key or (entry_key == "✅" and key in CONFIRM_ALIASES):
                chosen = Action(str(entry["id"]), "", str(entry["value"]))
                break
        if chosen is None:
            return
        level = self.power_level(room_id, sender)
        # No replay guard of our own: the core's confirm/cancel are compare-and-set, so a
        # second ✅ (or a replayed one) changes nothing, and a failed one can be retried.
        # Whether this sender may confirm is the core's to say, from the power level.
        _log(
            logging.INFO,
            "matrix.action",
            room=room_id,
            sender=sender,
            action=chosen.id,
            level=level,
        )
        assert self._on_action is not None
        await self._on_action(
            ChatAction(
                "matrix", ChannelId(room_id), chosen.id, chosen.value, ChatUserId(sender), level
            )
        )

    async def _actions_of(self, room_id: str, event_id: str) -> list[dict[str, str]]:
        """The actions offered by our message `event_id`; the event itself is the fallback."""
        stored = self._kv.get(self._k(f"actions:{event_id}"))
        if stored:
            return list(json.loads(stored))
        assert self._client is not None
        resp = await self._client.room_get_event(room_id, event_id)
        if not isinstance(resp, RoomGetEventResponse):
            return []
        src = resp.event.source
        actions = (src.get("content") or {}).get(ACTIONS_FIELD)
        if src.get("sender") != self.user_id or not isinstance(actions, list):
            return []
        return [a for a in actions if isinstance(a, dict)]

    def power_level(self, room_id: str, user_id: str) -> int:
        """The user's level; room creators outrank everyone from room version 12 on."""
        room = self._client.rooms.get(room_id) if self._client else None
        if room is None:
            return 0
        creators, version = self._creators.get(room_id, (frozenset(), "1"))
        if user_id in creators and version not in LEGACY_ROOM_VERSIONS:
            return CREATOR_POWER_LEVEL
        return int(room.power_levels.get_user_level(user_id))

    # --- sending

    def _usable(self, room_id: str) -> AsyncClient:
        if self._client is None:
            raise Unavailable("the Matrix platform is not started")
        if room_id not in self.rooms:
            raise PlatformRefused(f"Matrix room {room_id} is not one this bot serves")
        room = self._client.rooms.get(room_id)
        if room is not None and room.encrypted:
            raise PlatformRefused(
                f"Matrix room {room_id} is end-to-end encrypted; refusing to send plaintext"
            )
        return self._client

    async def _send(
        self,
        client: AsyncClient,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        tx: str | None,
    ) -> str:
        try:
            resp = await client.room_send(room_id, event_type, content, tx_id=tx)
        except _SYNC_ERRORS as e:
            raise Unavailable(f"Matrix send to {room_id}: {self._scrub(e)}") from None
        if not isinstance(resp, RoomSendResponse):
            raise self._error_for(resp, "send to", room_id)
        return str(resp.event_id)

    def _error_for(self, resp: object, what: str, where: str) -> Exception:
        code = getattr(resp, "status_code", None)
        message = f"Matrix could not {what} {where}: {resp}"
        if code == "M_LIMIT_EXCEEDED":
            wait_ms = getattr(resp, "retry_after_ms", None) or 5000
            return RateLimited(self._clock.now() + timedelta(milliseconds=wait_ms), message)
        if code in ("M_FORBIDDEN", "M_UNKNOWN_TOKEN", "M_MISSING_TOKEN", "M_USER_DEACTIVATED"):
            return PlatformRefused(message)
        return Unavailable(message)

    async def _own_marks(self, client: AsyncClient, thread: ThreadRef) -> list[tuple[str, str]]:
        marks = {m for m in STATE_MARKS.values() if m}
        found: list[tuple[str, str]] = []
        try:
            async for event in client.room_get_event_relations(
                thread.channel,
                thread.root,
                rel_type=RelationshipType.annotation,
                event_type="m.reaction",
            ):
                src = event.source
                key = ((src.get("content") or {}).get("m.relates_to") or {}).get("key")
                if src.get("sender") == self.user_id and key in marks:
                    found.append((str(key), str(src["event_id"])))
        except AttributeError:
            # nio 0.26 reads `next_batch` off an error response: the request failed.
            raise Unavailable(f"Matrix relations of {thread.root} unavailable") from None
        except _SYNC_ERRORS as e:
            raise Unavailable(f"Matrix relations of {thread.root}: {self._scrub(e)}") from None
        return found

    # --- bookkeeping

    def _k(self, name: str) -> str:
        return f"matrix:{self.user_id}:{name}"

    def _health(self, connected: bool, error: str | None = None) -> None:
        self._connected = connected
        self._error = error
        if connected:
            self._last_sync_at = self._clock.now()

    def _scrub(self, error: object) -> str:
        text = f"{type(error).__name__}: {error}" if isinstance(error, Exception) else str(error)
        live = self._client.access_token if self._client else None
        for secret in (self._token, self._password, live):
            if secret:
                text = text.replace(secret, "***")
        return text


def _log(level: int, name: str, /, **fields: object) -> None:
    """A structured line: the event name, then key=value pairs (never a token)."""
    if log.isEnabledFor(level):
        pairs = " ".join(f"{k}={v!r}" for k, v in fields.items())
        log.log(level, "%s %s", name, pairs, extra={"event": name, "fields": fields})
