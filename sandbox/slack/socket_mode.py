"""Socket Mode: the WebSocket the bot opens with apps.connections.open, and the
envelopes it must ack."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.slack.model import (
    Delivery,
    _Socket,
    _SocketGone,
    sign,
)
from sandbox.slack.workspace import Workspace

log = logging.getLogger("seva." + __name__)


class SocketMode(Workspace):
    """A part of `SlackState` (state.py), which holds the workspace it works on."""

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
        started = time.monotonic()
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
        seconds = time.monotonic() - started if reason is None else None
        self.deliveries.append(
            Delivery(kind, event_id, retry_num, status, reason, "socket", seconds)
        )
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
        started = time.monotonic()
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
        seconds = time.monotonic() - started if status is not None else None
        self.deliveries.append(Delivery(kind, event_id, retry_num, status, reason, "http", seconds))
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
