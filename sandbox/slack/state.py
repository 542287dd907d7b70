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

from sandbox.slack.people import People
from sandbox.slack.web_api import WebApi


class SlackState(People, WebApi):
    """The whole stand-in: the workspace (workspace.py), Socket Mode (socket_mode.py),
    event delivery to the bot (events.py), the Web API (web_api.py) and what people do
    at the console (people.py)."""

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
