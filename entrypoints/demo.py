"""`seva run --sandbox` (what `make demo` runs): the real bridge against the stand-ins.

The bridge is the same code as production, built by the same composition root; only
its environment points at the local X and Slack stand-ins (`sandbox/`), with tokens
made up for this run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from pathlib import Path

import sandbox
from adapters.clock import ClockFileError, OffsetClock
from bot.config import Config, ConfigError, Env, load_config
from entrypoints import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK
from entrypoints.bootstrap import App, serve
from entrypoints.logs import setup_logging
from sandbox.scenario import CHANNELS, HANDLE, USERS, play
from sandbox.server import start_sandbox
from sandbox.slack.state import SlackState
from sandbox.x.state import XState

BUILTIN_CONFIG = Path(sandbox.__file__).with_name("seva.sandbox.yaml")
CONSOLE_HOST, CONSOLE_PORT = "127.0.0.1", 8000
DATA_DIR = Path(".sandbox")


def _fresh_database() -> Path:
    """The stand-ins start empty each run, so the database must too."""
    DATA_DIR.mkdir(exist_ok=True)
    for leftover in DATA_DIR.glob("seva.db*"):
        leftover.unlink()
    return DATA_DIR / "seva.db"


def run_demo(args: argparse.Namespace) -> int:
    path = args.config or str(BUILTIN_CONFIG)
    try:
        config = load_config(path)
    except ConfigError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return EXIT_CONFIG
    clock_file = os.environ.get("SEVA_CLOCK_FILE") or None
    try:
        if clock_file:
            OffsetClock(clock_file)  # a bad file is a config error, before anything starts
    except ClockFileError as e:
        print(f"seva: SEVA_CLOCK_FILE: {e}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return asyncio.run(
            _main(
                config,
                scenario=not args.no_scenario,
                log_level=args.log_level,
                clock_file=clock_file,
            )
        )
    except KeyboardInterrupt:
        return EXIT_OK
    except OSError as e:
        print(
            f"seva: cannot start the sandbox: {e} (another program on the port? "
            "SEVA_SANDBOX_PORT=8001 make demo moves the console)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


async def _main(
    config: Config, *, scenario: bool, log_level: str, clock_file: str | None = None
) -> int:
    # With SEVA_CLOCK_FILE the stand-ins and the bridge share the controlled clock.
    world = OffsetClock(clock_file).timestamp if clock_file else time.time
    tokens = {
        k: "sandbox-" + secrets.token_hex(12) for k in ("bearer", "key", "secret", "at", "ats")
    }
    slack_token = "xoxb-sandbox-" + secrets.token_hex(12)
    signing_secret = secrets.token_hex(16)
    x_state = XState(
        username=HANDLE,
        bearer_token=tokens["bearer"],
        api_key=tokens["key"],
        api_secret=tokens["secret"],
        access_token=tokens["at"],
        access_token_secret=tokens["ats"],
        clock=world,
    )
    slack_state = SlackState(
        slack_token,
        signing_secret,
        None,
        channels=CHANNELS,
        users=USERS,
        usergroups=[("S0HEALTHONCALL", "health-oncall")],
        clock=world,
    )
    port = int(os.environ.get("SEVA_SANDBOX_PORT", CONSOLE_PORT))
    stand = await start_sandbox(CONSOLE_HOST, port, x_state=x_state, slack_state=slack_state)
    db = _fresh_database()
    env = Env(  # type: ignore[call-arg]
        _env_file=None,
        # Never $SEVA_DATABASE_URL: the sandbox must not drain a real deployment's outbox.
        SEVA_DATABASE_URL=f"sqlite:///{db}",
        SEVA_HTTP_HOST="127.0.0.1",
        SEVA_HTTP_PORT=int(os.environ.get("SEVA_HTTP_PORT", 0)),
        X_BEARER_TOKEN=tokens["bearer"],
        X_API_KEY=tokens["key"],
        X_API_SECRET=tokens["secret"],
        X_ACCESS_TOKEN=tokens["at"],
        X_ACCESS_TOKEN_SECRET=tokens["ats"],
        X_API_BASE_URL=stand.x_base_url,
        SLACK_BOT_TOKEN=slack_token,
        SLACK_SIGNING_SECRET=signing_secret,
        SLACK_API_BASE_URL=stand.slack_api_url,
        SEVA_CLOCK_FILE=clock_file,
    )
    setup_logging(env, log_level)

    async def started(app: App) -> None:
        assert app.http is not None
        slack_state.events_url = f"http://127.0.0.1:{app.http.port}/slack/events"
        print(
            f"\n  Seva Bridge sandbox console: {stand.url}\n"
            f"  bridge health: http://127.0.0.1:{app.http.port}/healthz  (Ctrl-C stops)\n",
            flush=True,
        )
        if scenario:
            try:
                await play(stand.url, log=lambda line: print(f"  scenario: {line}", flush=True))
            except Exception as e:  # the demo goes on; the console still works
                print(f"  scenario did not complete: {e}", file=sys.stderr, flush=True)

    try:
        return await serve(env, config, started=started)
    finally:
        await stand.stop()
