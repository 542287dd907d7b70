"""The stand-in's workspace: channels, users, messages and ephemerals, kept in memory,
with the lookups and message bookkeeping every part of it shares (the base of
`SlackState`: socket_mode.py, events.py, web_api.py and people.py build on it)."""

from __future__ import annotations

import asyncio
import hmac
import math
import secrets
import time
import uuid
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import aiohttp

from sandbox.slack.model import (
    _KEPT_DELIVERIES,
    _US,
    DEFAULT_RETRY_DELAYS,
    DEFAULT_SCOPES,
    ApiError,
    Channel,
    Delivery,
    Ephemeral,
    Message,
    RateLimitedError,
    User,
    UserGroup,
    _as_json,
    _ResponseTarget,
    _Socket,
    ts_to_us,
    us_to_ts,
)


class Workspace:
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
        usergroups: Iterable[tuple[str, str]] = (),
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
        self.usergroups: dict[str, UserGroup] = {}
        for group_id, handle in usergroups:
            self.add_usergroup(group_id, handle)
        self.ephemeral: list[Ephemeral] = []
        self.deliveries: deque[Delivery] = deque(maxlen=_KEPT_DELIVERIES)
        # Fault injection (web_api.py): errors for the next calls, a revoked bot token.
        self.faults: list[Any] = []
        self.token_error: str | None = None

        self._last_us = 0
        self._instance = secrets.token_hex(3).upper()  # event ids stay unique across restarts
        self._counter = 0
        self._envelopes: dict[str, bytes] = {}
        self._response_targets: dict[str, _ResponseTarget] = {}
        self._response_uses: dict[str, int] = {}
        self.delays: dict[str, float] = {}  # Web API method -> seconds it takes to answer
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}  # id -> (file object, bytes)
        self.stub_files: set[str] = set()  # shown in events as check_file_info stubs
        self.scopes: tuple[str, ...] = DEFAULT_SCOPES  # granted to the bot token
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._background_slots = asyncio.Semaphore(16)
        self._tickets: dict[str, None] = {}  # unused Socket Mode tickets, oldest first
        self._sockets: list[_Socket] = []  # connected, oldest first; the newest gets envelopes
        self._socket_count = 0
        self._socket_used = False  # once the bot used Socket Mode, retries wait for it to return
        self._pending: dict[str, tuple[_Socket, asyncio.Future[dict[str, Any]]]] = {}

    # ------------------------------------------------------------------ set-up and lookups

    def add_channel(self, channel_id: str, name: str, *, bot_member: bool = True) -> None:
        """A channel; `bot_member=False` for one the bot was never added to."""
        self.channels[channel_id] = Channel(channel_id, name, is_member=bot_member)
        self._channel_names[name] = channel_id

    def dm(self, channel_id: str) -> Channel:
        """A person's direct-message channel (`D…`), the bot not in it: opened on use."""
        if not channel_id.startswith("D"):
            raise ApiError("channel_not_found")
        found = self.channels.get(channel_id)
        if found is None:
            found = self.channels[channel_id] = Channel(
                channel_id, channel_id, is_member=False, is_im=True
            )
        return found

    def add_user(
        self, user_id: str, name: str, real_name: str, *, team_id: str | None = None
    ) -> None:
        """A person; `team_id` of another workspace makes them a Slack Connect guest."""
        self.users[user_id] = User(user_id, name, real_name, team_id=team_id)

    def set_members(
        self, channel: Any, members: Iterable[str] | None, *, shared: bool | None = None
    ) -> None:
        """Who is in a channel (None: everyone), and whether it is shared with another
        workspace (Slack Connect)."""
        chan = self.channel(channel)
        chan.members = None if members is None else {str(m) for m in members}
        if shared is not None:
            chan.shared = shared

    def in_channel(self, chan: Channel, user_id: str) -> bool:
        return chan.members is None or user_id in chan.members

    def team_of(self, user_id: str) -> str:
        """The person's own workspace: ours, or a Slack Connect guest's."""
        found = self.users.get(user_id)
        return (found.team_id if found is not None else None) or self.team_id

    def add_usergroup(self, group_id: str, handle: str, users: Iterable[str] = ()) -> None:
        self.usergroups[group_id] = UserGroup(group_id, handle, handle, list(users))

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
        files: list[str] | None = None,
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
            subtype="file_share" if files else None,
            files=files,
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

    def add_file(self, user: str, name: str, mimetype: str, content: bytes) -> str:
        """A file a person uploads: the object Slack puts in `file_share` events and
        files.info (api.slack.com/events/message/file_share; golden capture
        message_file_share.json), served at `url_private` to the bot token only."""
        self._counter += 1
        file_id = f"F0{self._instance}{self._counter:06d}"
        base = (self.public_base_url or "http://127.0.0.1").rstrip("/")
        path = f"{base}/files-pri/{self.team_id}-{file_id}"
        kind = mimetype.split("/")[-1]
        obj: dict[str, Any] = {
            "id": file_id,
            "created": int(self.clock()),
            "timestamp": int(self.clock()),
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": kind,
            "pretty_type": kind.upper(),
            "user": user,
            "user_team": self.team_id,
            "size": len(content),
            "mode": "hosted",
            "is_external": False,
            "is_public": False,
            "url_private": f"{path}/{name}",
            "url_private_download": f"{path}/download/{name}",
            "permalink": f"https://seva-sandbox.slack.com/files/{user}/{file_id}/{name}",
            "file_access": "visible",
        }
        self.files[file_id] = (obj, content)
        return file_id

    def _file_in_event(self, file_id: str) -> dict[str, Any]:
        """The whole file object, or for a stub file the stub Slack sends in its place
        (golden capture message_file_share_slack_connect.json): files.info has the rest."""
        obj = self.files[file_id][0]
        if file_id not in self.stub_files:
            return obj
        return {
            "id": file_id,
            "mode": "file_access",
            "file_access": "check_file_info",
            "created": 0,
            "timestamp": 0,
            "user": "",
        }

    def file_bytes(self, file_id: str, authorization: str | None) -> tuple[str, bytes] | None:
        """A file's type and bytes for the bot token with files:read; None otherwise
        (Slack then redirects to its login page: 302, then an HTML 200)."""
        found = self.files.get(file_id)
        supplied = (authorization or "")[7:].strip() if authorization else ""
        ok_token = bool(supplied) and hmac.compare_digest(supplied, self.bot_token)
        if found is None or not ok_token or "files:read" not in self.scopes:
            return None
        return str(found[0]["mimetype"]), found[1]

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
        if msg.subtype is not None:
            out["subtype"] = msg.subtype
        if msg.subtype == "thread_broadcast" and msg.thread_us is not None:
            root_msg = self.channels[msg.channel].by_us.get(msg.thread_us)
            if root_msg is not None:
                out["root"] = {k: v for k, v in self._render(root_msg, metadata=False).items()}
        if msg.files:
            out["files"] = [self._file_in_event(f) for f in msg.files if f in self.files]
            out["upload"] = True
            out["display_as_bot"] = False
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
        if msg.bot_id is None:
            # The author's own workspace, as Slack marks messages in shared channels
            # (facts-issue7 section 14: `team`, `user_team`, `source_team`).
            team = self.team_of(msg.user)
            event.update(team=team, user_team=team, source_team=team)
        event["channel"] = msg.channel
        event["event_ts"] = msg.ts
        event["channel_type"] = "channel"
        return event

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every background delivery (and retry) has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
