"""One local HTTP server for the whole sandbox: the X stand-in, the Slack stand-in and the console.

Everything shares one origin so the console (plain static files) can drive both stand-ins'
control APIs without CORS::

    sandbox = await start_sandbox(port=0, x_state=x_state, slack_state=slack_state)
    sandbox.x_base_url     # X_API_BASE_URL for the bot
    sandbox.slack_api_url  # SLACK_API_BASE_URL for the bot
    await sandbox.stop()
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from aiohttp import web

from sandbox.slack.routes import build_slack_app
from sandbox.slack.state import SlackState
from sandbox.x.routes import build_x_app
from sandbox.x.state import XState

STATIC_DIR = Path(__file__).with_name("static")
CONSOLE_PAGE = "console.html"

# Explicit, so the console works the same whatever the host's mime.types says.
_CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}
_TEXT_TYPES = {"text/html", "text/javascript", "text/css", "image/svg+xml", "application/json"}

# The console only ever needs its own origin; this also forbids inline script should
# any tweet or message text ever slip into the markup.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@dataclass(slots=True)
class Sandbox:
    """A running sandbox server; ``stop()`` closes the listener and both stand-ins."""

    url: str
    x_base_url: str
    slack_api_url: str
    host: str
    port: int
    _runner: web.AppRunner

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _static_response(path: Path) -> web.StreamResponse:
    content_type = _CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    headers = {
        "Content-Type": content_type + ("; charset=utf-8" if content_type in _TEXT_TYPES else ""),
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if content_type == "text/html":
        headers["Content-Security-Policy"] = _CSP
        headers["Referrer-Policy"] = "no-referrer"
    return web.Response(body=path.read_bytes(), headers=headers)


def _static_file(name: str) -> Path:
    """A file directly inside ``static/``; anything else (``..``, subfolders) is a 404."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise web.HTTPNotFound()
    path = STATIC_DIR / name
    if not path.is_file():
        raise web.HTTPNotFound()
    return path


async def _console(request: web.Request) -> web.StreamResponse:
    return _static_response(_static_file(CONSOLE_PAGE))


async def _static(request: web.Request) -> web.StreamResponse:
    return _static_response(_static_file(request.match_info["name"]))


def build_sandbox_app(*, x_state: XState, slack_state: SlackState) -> web.Application:
    """The root application: ``/x`` and ``/slack`` stand-ins, the console at ``/``."""
    app = web.Application()
    app.add_subapp("/x", build_x_app(x_state))
    app.add_subapp("/slack", build_slack_app(slack_state))
    app.router.add_get("/", _console, name="console")
    app.router.add_get("/static/{name}", _static, name="static")
    return app


def _origin(host: str, port: int) -> str:
    try:
        is_v6 = ipaddress.ip_address(host).version == 6
    except ValueError:
        is_v6 = False
    return f"http://[{host}]:{port}" if is_v6 else f"http://{host}:{port}"


async def start_sandbox(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    x_state: XState,
    slack_state: SlackState,
) -> Sandbox:
    """Serve the sandbox on ``host:port`` (port 0 picks a free one) and return once listening."""
    # The console polls every second: an access log line per poll would drown the bot's log.
    runner = web.AppRunner(
        build_sandbox_app(x_state=x_state, slack_state=slack_state), access_log=None
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = int(runner.addresses[0][1])
    except BaseException:
        await runner.cleanup()
        raise
    url = _origin(host, bound_port)
    if slack_state.public_base_url is None:
        # response_url must point at this server even before any request taught it the origin.
        slack_state.public_base_url = url + "/slack"
    return Sandbox(
        url=url,
        x_base_url=url + "/x",
        slack_api_url=url + "/slack/api/",
        host=host,
        port=bound_port,
        _runner=runner,
    )


__all__ = ["Sandbox", "build_sandbox_app", "start_sandbox"]
