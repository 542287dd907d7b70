"""The bot's own HTTP server: Slack events, health and metrics."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

SlackHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        health: Callable[[], dict[str, Any]],
        metrics: Callable[[], Awaitable[bytes]],
        slack: SlackHandler | None = None,
    ) -> None:
        self._host, self._port = host, port
        self._health, self._metrics, self._slack = health, metrics, slack
        self._runner: web.AppRunner | None = None
        self.port = port

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics_handler)
        app.router.add_post("/slack/events", self._slack_events)
        return app

    async def _healthz(self, _: web.Request) -> web.Response:
        # 200 while the bot works, degraded or not (the body says which part and why);
        # 503 while it is down (the database cannot be written: events are refused).
        health = self._health()
        status = 503 if health.get("status") == "down" else 200
        return web.json_response(health, status=status, dumps=lambda v: json.dumps(v, default=str))

    async def _metrics_handler(self, _: web.Request) -> web.Response:
        body = await self._metrics()
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    async def _slack_events(self, request: web.Request) -> web.StreamResponse:
        if self._slack is None:
            return web.json_response({"error": "Slack is not configured"}, status=404)
        return await self._slack(request)

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])  # the real one when port 0 was asked

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
