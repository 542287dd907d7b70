"""Receiving from Matrix: logging in, joining the rooms, and the sync loop that stores
each new event worth handling in the inbox together with the sync token, in one
commit (the platform handles them from there), so a crash replays and never loses.

A mixin of `MatrixPlatform` (platform.py), which sets the attributes declared here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from datetime import datetime, timedelta
from typing import Any

from aiohttp import ClientError
from nio import (
    AsyncClient,
    JoinedRoomsResponse,
    JoinError,
    LoginResponse,
    MessageDirection,
    RoomGetStateResponse,
    RoomMessagesResponse,
    SyncResponse,
    WhoamiResponse,
)

from adapters.inbox import InboxWorker
from adapters.matrix.parse import retry_delay
from bot.domain import ChannelId
from bot.ports import (
    Clock,
    CredentialsRefused,
    Inbox,
    KeyValue,
    PlatformRefused,
    RateLimited,
    Unavailable,
)

log = logging.getLogger("seva." + __name__)

SYNC_ERRORS = (ClientError, TimeoutError, OSError)


def log_event(log: logging.Logger, level: int, name: str, /, **fields: object) -> None:
    """A structured line: the event name, then key=value pairs (never a token)."""
    if log.isEnabledFor(level):
        pairs = " ".join(f"{k}={v!r}" for k, v in fields.items())
        log.log(level, "%s %s", name, pairs, extra={"event": name, "fields": fields})


def _log(level: int, name: str, /, **fields: object) -> None:
    log_event(log, level, name, **fields)


class MatrixSync:
    """Login, rooms and the sync loop of one Matrix account."""

    homeserver: str
    user_id: str
    rooms: tuple[ChannelId, ...]
    _kv: KeyValue
    _inbox: Inbox
    _worker: InboxWorker
    _token: str | None
    _password: str | None
    _clock: Clock
    _device_name: str
    _sync_timeout_ms: int
    _max_backoff: float
    _history_pages: int
    _timeline_limit: int
    _gap_pages: int
    _gap_page_size: int
    _client: AsyncClient | None
    _stopping: asyncio.Event
    _since: str | None
    _creators: dict[str, tuple[frozenset[str], str]]  # creators, room version
    _connected: bool
    _last_sync_at: datetime | None
    _error: str | None
    _room_problems: str

    def _wanted(self, event: dict[str, Any]) -> bool:
        """Whether a new event from a served room is one to handle (the platform's side)."""
        raise NotImplementedError

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
            client.device_id = await self._kv.get(self._k("device_id")) or ""
            resp = await client.login(self._password, device_name=self._device_name)
            if not isinstance(resp, LoginResponse):
                raise self._error_for(resp, "log in as", self.user_id)
        if client.device_id:
            await self._kv.put(self._k("device_id"), client.device_id)
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
                    # The homeserver's wait, but never past MAX_RATE_LIMIT_WAIT.
                    until = e.until_capped(self._clock.now())
                    delay = max(delay, (until - self._clock.now()).total_seconds())
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
        await self._store(await self._dispatch(resp, self._since), resp.next_batch)
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

    async def _store(self, events: list[tuple[str, dict[str, Any]]], next_batch: str) -> None:
        """The batch's events and its sync token, in one commit: a crash before it syncs
        the batch again, and after it loses nothing (they are handled from the inbox);
        a database that cannot take them fails the sync, which is tried again from the
        old token."""
        await self._inbox.accept_all(
            "matrix",
            [(str(e["event_id"]), json.dumps({"room": r, "event": e})) for r, e in events],
            then_put=(self._k("sync_token"), next_batch),
        )
        self._since = next_batch
        if events:
            self._worker.wake()

    async def _dispatch(
        self, resp: SyncResponse, since: str | None, skip_rooms: AbstractSet[str] = frozenset()
    ) -> list[tuple[str, dict[str, Any]]]:
        """The new events of served rooms worth handling, oldest first, per room."""
        wanted: list[tuple[str, dict[str, Any]]] = []
        for room_id, info in resp.rooms.join.items():
            if room_id not in self.rooms:
                continue
            self._note_creators(room_id, [e.source for e in [*info.state, *info.timeline.events]])
            if since is None or room_id in skip_rooms:
                continue  # backlog
            events = [e.source for e in info.timeline.events]
            if info.timeline.limited and info.timeline.prev_batch:
                events = await self._gap(room_id, info.timeline.prev_batch, since) + events
            wanted.extend((room_id, event) for event in events if self._wanted(event))
        return wanted

    async def _gap(self, room_id: str, prev_batch: str, since: str) -> list[dict[str, Any]]:
        """Events a limited sync left out between `since` and the timeline, oldest first.

        Paged back at most `_gap_pages` pages of `_gap_page_size`; the spec gives no size
        of a gap, so one that is longer is logged with the events it is at least
        (`matrix.gap.too_long`), and the oldest of it are not handled."""
        assert self._client is not None
        found: list[dict[str, Any]] = []
        start = prev_batch
        for _ in range(self._gap_pages):
            resp = await self._client.room_messages(
                room_id,
                start=start,
                end=since,
                direction=MessageDirection.back,
                limit=self._gap_page_size,
            )
            if not isinstance(resp, RoomMessagesResponse):
                _log(logging.WARNING, "matrix.gap.failed", room=room_id, error=str(resp))
                break
            found.extend(e.source for e in resp.chunk)
            if not resp.chunk or not resp.end or resp.end == start:
                break
            start = resp.end
        else:
            _log(
                logging.ERROR,
                "matrix.gap.too_long",
                room=room_id,
                at_least=len(found),
                pages=self._gap_pages,
                unhandled="the events older than these",
            )
        _log(logging.INFO, "matrix.gap.filled", room=room_id, events=len(found))
        return list(reversed(found))

    def _note_creators(self, room_id: str, events: Iterable[dict[str, Any]]) -> None:
        for src in events:
            if src.get("type") == "m.room.create" and src.get("state_key") == "":
                content = src.get("content") or {}
                extra = content.get("additional_creators") or []
                creators = frozenset({str(src.get("sender", "")), *map(str, extra)})
                self._creators[room_id] = (creators, str(content.get("room_version", "1")))

    def _error_for(self, resp: object, what: str, where: str) -> Exception:
        code = getattr(resp, "status_code", None)
        message = f"Matrix could not {what} {where}: {resp}"
        transport = getattr(resp, "transport_response", None)
        if code == "M_LIMIT_EXCEEDED" or getattr(transport, "status", None) == 429:
            now = self._clock.now()
            headers = getattr(transport, "headers", None)
            wait = retry_delay(headers, getattr(resp, "retry_after_ms", None), now)
            return RateLimited(now + (wait if wait is not None else timedelta(seconds=5)), message)
        if code in ("M_UNKNOWN_TOKEN", "M_MISSING_TOKEN", "M_USER_DEACTIVATED"):
            return CredentialsRefused(message)  # the account: pause until it works again
        if code == "M_FORBIDDEN":
            return PlatformRefused(message)  # this room or action: no retry cures it
        return Unavailable(message)

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
