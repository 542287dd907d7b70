"""Delivery of events to the bot: signed HTTP requests to its events URL, with
Slack's retries."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from sandbox.slack.model import (
    _KEPT_ENVELOPES,
    JSON_TYPE,
    MAX_EVENT_RETRIES,
    Delivery,
)
from sandbox.slack.socket_mode import SocketMode

log = logging.getLogger("seva." + __name__)


class EventDelivery(SocketMode):
    """A part of `SlackState` (state.py), which holds the workspace it works on."""

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
                "is_ext_shared_channel": self._shared(event),
                "event_context": f"4-{event_id}",
            },
            separators=(",", ":"),
        ).encode()
        self._envelopes[event_id] = body
        if len(self._envelopes) > _KEPT_ENVELOPES:
            del self._envelopes[next(iter(self._envelopes))]
        return event_id, body

    def _shared(self, event: dict[str, Any]) -> bool:
        chan = self.channels.get(str(event.get("channel") or ""))
        return bool(chan is not None and chan.shared)

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
