"""Matrix as a `ChatPlatform`, on matrix-nio's AsyncClient, for unencrypted rooms only.

The adapter translates at the edge: it drops its own events, edits, notices from
other bots, backlog and sync replays before anything reaches the core, and it
renders `Rich` so that untrusted text can never ping a room or forge a link.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import urllib.parse
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from aiohttp import ClientError
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    JoinedRoomsResponse,
    MessageDirection,
    RoomGetEventResponse,
    RoomGetStateEventResponse,
    RoomMessagesResponse,
    RoomSendResponse,
    SyncResponse,
    WhoamiResponse,
)
from nio.api import RelationshipType

from adapters.inbox import InboxWorker
from adapters.matrix.parse import is_human_text, normalise_key, strip_reply_fallback, with_user_ids
from adapters.matrix.render import (
    ACTION_KEYS,
    ACTIONS_FIELD,
    CONFIRM_ALIASES,
    DEDICATED_KEYS,
    HTML_FORMAT,
    KEY_FIELD,
    STATE_MARKS,
    TICKET_FIELD,
    TWEET_FIELD,
    action_keys,
    edit_content,
    render,
    thread_relation,
    txn_id,
)
from adapters.matrix.sync import SYNC_ERRORS, MatrixSync, log_event
from bot.addressing import command_text
from bot.domain import (
    Action,
    ChannelId,
    ChatAction,
    ChatFile,
    ChatMessage,
    ChatUserId,
    MessageId,
    Outgoing,
    Platform,
    Rich,
    ThreadRef,
)
from bot.outbox import ThreadMark
from bot.ports import (
    ActionHandler,
    CheckLine,
    Clock,
    CommandContext,
    CommandHandler,
    Inbox,
    InboxEvent,
    KeyValue,
    MessageHandler,
    PlatformRefused,
    Standing,
    Unavailable,
)

log = logging.getLogger("seva." + __name__)


def _log(level: int, name: str, /, **fields: object) -> None:
    log_event(log, level, name, **fields)


# Room versions where power comes only from m.room.power_levels; from v12 ("hydra")
# on, the creators are above every level and are not listed in `users`.
LEGACY_ROOM_VERSIONS = frozenset(str(v) for v in range(1, 12))
CREATOR_POWER_LEVEL = 2**53 - 1  # above any level canonical JSON can express


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


async def check(
    homeserver: str,
    user_id: str,
    *,
    access_token: str | None,
    password: str | None,
    rooms: Iterable[str] = (),
) -> list[CheckLine]:
    """`seva check --online`, Matrix's part: `whoami` (after logging in, with a
    password), then for each configured room that the bot has joined it, that it is not
    end-to-end encrypted, and that the bot's power level lets it post, react and redact
    its own reactions (m.room.power_levels, spec: client-server API, room events).

    Raises PlatformRefused or Unavailable naming what to check when the account fails.
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
        lines = [CheckLine(True, str(who.user_id))]
        rooms = list(rooms)
        joined = await client.joined_rooms()
        joined_ids = set(joined.rooms) if isinstance(joined, JoinedRoomsResponse) else set()
        invited: set[str] = set()
        if set(rooms) - joined_ids:
            # One sync that waits for nothing and keeps nothing: which rooms invite us.
            synced = await client.sync(timeout=0, sync_filter=_INVITES_ONLY)
            invited = set(synced.rooms.invite) if isinstance(synced, SyncResponse) else set()
        for room_id in rooms:
            if room_id not in joined_ids and room_id in invited:
                lines.append(
                    CheckLine(
                        True,
                        f"room {room_id}: invited, and the bot joins it when it starts "
                        "(encryption and power level are checked at start)",
                    )
                )
                continue
            lines += await _room_lines(client, str(who.user_id), room_id, room_id in joined_ids)
        return lines
    except PlatformRefused:
        raise
    except Exception as e:
        raise Unavailable(f"{homeserver} unreachable ({type(e).__name__})") from None
    finally:
        await client.close()


_INVITES_ONLY = {
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
    "room": {"timeline": {"limit": 1}, "state": {"lazy_load_members": True}},
}

# What the bot sends in a room: thread roots and answers, state reactions, and the
# redactions that take an old state reaction away.
_BOT_EVENTS = ("m.room.message", "m.reaction", "m.room.redaction")


async def _room_lines(
    client: AsyncClient, user_id: str, room_id: str, joined: bool
) -> list[CheckLine]:
    if not joined:
        return [
            CheckLine(
                False,
                f"room {room_id} is not joined: invite {user_id} to it (the bot joins an "
                "invited or public room by itself when it starts)",
            )
        ]
    lines = []
    encryption = await client.room_get_state_event(room_id, "m.room.encryption")
    if isinstance(encryption, RoomGetStateEventResponse) and encryption.content:
        lines.append(
            CheckLine(
                False,
                f"room {room_id} is end-to-end encrypted, which Seva Bridge does not support: "
                "use an unencrypted room",
            )
        )
    levels = await client.room_get_state_event(room_id, "m.room.power_levels")
    content = levels.content if isinstance(levels, RoomGetStateEventResponse) else {}
    create = await client.room_get_state_event(room_id, "m.room.create")
    created = create.content if isinstance(create, RoomGetStateEventResponse) else {}
    version = str(created.get("room_version", "1"))
    creators = {
        str(created.get("creator") or ""),
        *map(str, created.get("additional_creators") or []),
    }
    users = content.get("users") or {}
    mine = int(users.get(user_id, content.get("users_default", 0)))
    if user_id in creators and version not in LEGACY_ROOM_VERSIONS:
        mine = CREATOR_POWER_LEVEL
    events = content.get("events") or {}
    default = int(content.get("events_default", 0))
    need = max(int(events.get(kind, default)) for kind in _BOT_EVENTS)
    if mine < need:
        lines.append(
            CheckLine(
                False,
                f"in room {room_id} the bot's power level is {mine} but posting, reacting "
                f"and redacting need {need}: raise {user_id} to {need}",
            )
        )
    if not lines:
        lines.append(
            CheckLine(
                True, f"room {room_id}: joined, unencrypted, power level {mine} (needs {need})"
            )
        )
    return lines


class MatrixPlatform(MatrixSync):
    """One Matrix account serving a fixed set of rooms."""

    name: Platform = "matrix"
    private_responses = False
    burst = 20  # Matrix paces nothing itself; its rate limits come back as 429s

    def __init__(
        self,
        homeserver: str,
        user_id: str,
        *,
        rooms: Iterable[ChannelId],
        state: KeyValue,
        inbox: Inbox,
        access_token: str | None = None,
        password: str | None = None,
        clock: Clock | None = None,
        device_name: str = "Seva Bridge",
        sync_timeout_ms: int = 30_000,
        max_backoff_seconds: float = 60.0,
        history_pages: int = 5,
        timeline_limit: int = 50,
        gap_pages: int | None = None,
        gap_page_size: int = 100,
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
        self._inbox = inbox
        self._worker = InboxWorker(inbox, "matrix", self._handle_stored, self._clock)
        self._device_name = device_name
        self._sync_timeout_ms = sync_timeout_ms
        self._max_backoff = max_backoff_seconds
        self._history_pages = history_pages
        self._timeline_limit = timeline_limit
        self._gap_pages = gap_pages if gap_pages is not None else history_pages * 4
        self._gap_page_size = gap_page_size
        self._thread_latest: dict[str, str] = {}  # thread root -> its newest message
        self._mentions_of: dict[str, list[str]] = {}  # our message -> whom it mentions
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
                # nio would sleep whatever retry_after_ms says (however far ahead) and
                # retry: a 429 comes back to us instead, and its wait is capped.
                max_limit_exceeded=0,
                max_timeouts=2,
                encryption_enabled=False,
                store_sync_tokens=False,
            ),
        )
        try:
            await self._login(client)
            await self._join_rooms(client)
            since = await self._kv.get(self._k("sync_token"))
            batches = await self._initial_syncs(client, since)
            self._refuse_encrypted(client)
            await self._learn_creators(client)
            known = set(json.loads(await self._kv.get(self._k("rooms")) or "[]"))
            missed: list[tuple[str, dict[str, Any]]] = []
            for token, batch in batches:
                missed += await self._dispatch(batch, token, skip_rooms=set(self.rooms) - known)
            await self._store(missed, batches[-1][1].next_batch)
            await self._kv.put(self._k("rooms"), json.dumps(sorted(set(self.rooms) | known)))
        except BaseException as e:
            self._health(connected=False, error=self._scrub(e))
            await client.close()
            self._client = None
            if isinstance(e, ClientError | TimeoutError):
                raise Unavailable(f"Matrix homeserver {self.homeserver}: {self._error}") from None
            raise
        self._health(connected=True)
        self._worker.start()  # what was stored and not handled before a crash, too
        _log(logging.INFO, "matrix.started", user=self.user_id, rooms=list(self.rooms))
        self._task = asyncio.create_task(self._run(client), name="matrix-sync")

    async def stop(self) -> None:
        """Ends the sync loop (finishing the batch in hand) and closes the client."""
        await self._worker.stop()
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
        pairs = action_keys(message.actions)
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
            latest = self._thread_latest.get(message.thread_root)
            content["m.relates_to"] = thread_relation(message.thread_root, latest)
        event_id = await self._send(
            client, message.channel, "m.room.message", content, txn_id(message.key)
        )
        self._remember(event_id, message.thread_root, rendered.user_ids)
        if pairs:
            await self._kv.put(self._k(f"actions:{event_id}"), json.dumps(content[ACTIONS_FIELD]))
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
            except SYNC_ERRORS as e:
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
        before = await self._mentioned_by(client, channel, message_id)
        content = edit_content(rendered, message_id, before)
        await self._send(client, channel, "m.room.message", content, None)
        self._mentions_of[message_id] = list(rendered.user_ids)

    async def _mentioned_by(
        self, client: AsyncClient, room_id: str, message_id: MessageId
    ) -> list[str]:
        """Whom our message mentions now: remembered when we sent or last edited it, else
        read from the event, as its latest edit left it (the server bundles that edit
        under `unsigned.m.relations.m.replace`, spec: event_replacements)."""
        if message_id in self._mentions_of:
            return self._mentions_of[message_id]
        resp = await client.room_get_event(room_id, message_id)
        if not isinstance(resp, RoomGetEventResponse):
            return []
        source = resp.event.source
        content = source.get("content") or {}
        latest = ((source.get("unsigned") or {}).get("m.relations") or {}).get("m.replace")
        if isinstance(latest, dict):
            content = (latest.get("content") or {}).get("m.new_content") or content
        mentions = content.get("m.mentions") or {}
        return [str(u) for u in mentions.get("user_ids") or []]

    def _remember(self, event_id: str, thread_root: str | None, mentioned: list[str]) -> None:
        """Our own message: the newest in its thread, and whom it mentions (for edits)."""
        if thread_root:
            self._thread_latest[thread_root] = event_id
        if len(self._mentions_of) > 10_000:
            self._mentions_of.clear()
        self._mentions_of[event_id] = list(mentioned)

    async def permalink(self, channel: ChannelId, message_id: MessageId) -> str:
        """A matrix.to link to the event (Matrix spec, appendices: "matrix.to navigation"),
        routed through the bot's own server, which is in the room."""
        room = urllib.parse.quote(channel, safe="!:")
        event = urllib.parse.quote(message_id, safe="$:")
        via = urllib.parse.quote(self.user_id.split(":", 1)[-1], safe=":")
        return f"https://matrix.to/#/{room}/{event}?via={via}"

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
            latest = self._thread_latest.get(ctx.thread_root)
            content["m.relates_to"] = thread_relation(ctx.thread_root, latest)
        event_id = await self._send(client, ctx.channel, "m.room.message", content, None)
        self._remember(event_id, ctx.thread_root, rendered.user_ids)

    # --- incoming events

    def _wanted(self, event: dict[str, Any]) -> bool:
        """A person's message or reaction (not our own, not an edit or a notice)."""
        sender, kind = event.get("sender"), event.get("type")
        content = event.get("content") or {}
        event_id = event.get("event_id")
        if not isinstance(event_id, str) or not isinstance(sender, str):
            return False
        relates = content.get("m.relates_to") or {}
        if kind == "m.room.message" and relates.get("rel_type") == "m.thread":
            # The newest message in a thread: what our next post there falls back to
            # (noted as the sync brings it, whoever sent it).
            if len(self._thread_latest) > 10_000:
                self._thread_latest.clear()
            self._thread_latest[str(relates.get("event_id"))] = event_id
        if sender == self.user_id or kind not in ("m.room.message", "m.reaction"):
            return False
        return kind == "m.reaction" or is_human_text(content)

    async def _handle_stored(self, item: InboxEvent) -> None:
        """One stored event, handled (the inbox worker's callback): a failure is tried
        again, a redelivery never reaches here twice (the inbox is unique by event id)."""
        stored = json.loads(item.payload)
        room_id, event = str(stored["room"]), stored["event"]
        sender, content = str(event["sender"]), event.get("content") or {}
        if self._on_message is None or self._client is None:
            raise Unavailable("the Matrix platform is not started")
        if event.get("type") == "m.reaction":
            await self._on_reaction(room_id, sender, content)
        else:
            await self._on_text(room_id, str(event["event_id"]), sender, content)

    async def _on_text(
        self, room_id: str, event_id: str, sender: str, content: dict[str, Any]
    ) -> None:
        relates = content.get("m.relates_to") or {}
        root = relates.get("event_id") if relates.get("rel_type") == "m.thread" else None
        body = str(content["body"])
        if "m.in_reply_to" in relates and not relates.get("is_falling_back"):
            body = strip_reply_fallback(body)
        thread_root = MessageId(root) if isinstance(root, str) else None
        command = command_text(with_user_ids(body, content), [self.user_id])
        if command is not None:
            ctx = CommandContext(
                "matrix",
                ChannelId(room_id),
                ChatUserId(sender),
                thread_root,
                power_level=self.power_level(room_id, sender),
            )
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
        key = normalise_key(str(key))
        wanted = {normalise_key(k) for k in (*ACTION_KEYS, *DEDICATED_KEYS.values())}
        if key not in wanted and key not in CONFIRM_ALIASES:
            return
        actions = await self._actions_of(room_id, target)
        chosen: Action | None = None
        for entry in actions:
            entry_key = normalise_key(entry["key"])
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
        stored = await self._kv.get(self._k(f"actions:{event_id}"))
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

    async def fetch_file(self, file: ChatFile) -> bytes:
        """Matrix messages reach the core as text only (`m.image` is not read yet), so
        no reply from a room carries a file; asked anyway, it is refused by name."""
        raise PlatformRefused(f"files from Matrix rooms are not tweeted ({file.name})")

    async def find_user(self, name: str) -> ChatUserId | None:
        """A member of the served rooms by display name or localpart (`assign 4 asha`)."""
        wanted = name.strip().lstrip("@").casefold()
        found: set[str] = set()
        for room_id in self.rooms:
            room = self._client.rooms.get(room_id) if self._client else None
            for user_id, user in (room.users if room is not None else {}).items():
                localpart = user_id[1:].split(":", 1)[0]
                names = {user_id.casefold(), localpart.casefold()}
                if user.display_name:
                    names.add(str(user.display_name).casefold())
                if wanted in names:
                    found.add(user_id)
        return ChatUserId(found.pop()) if len(found) == 1 else None

    async def standing(self, channel: ChannelId, user: ChatUserId) -> Standing:
        """Whether `user` has joined the room now (their `m.room.member` state event: the
        sync loads members lazily, so the synced list may be incomplete), and their power
        level there. Anything but a readable `join` is not a member."""
        client = self._usable(channel)
        try:
            resp = await client.room_get_state_event(channel, "m.room.member", user)
        except SYNC_ERRORS as e:
            raise Unavailable(f"Matrix membership in {channel}: {self._scrub(e)}") from None
        joined = (
            isinstance(resp, RoomGetStateEventResponse) and resp.content.get("membership") == "join"
        )
        return Standing(member=joined, power_level=self.power_level(channel, user))

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
        except SYNC_ERRORS as e:
            raise Unavailable(f"Matrix send to {room_id}: {self._scrub(e)}") from None
        if not isinstance(resp, RoomSendResponse):
            raise self._error_for(resp, "send to", room_id)
        return str(resp.event_id)

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
        except SYNC_ERRORS as e:
            raise Unavailable(f"Matrix relations of {thread.root}: {self._scrub(e)}") from None
        return found
