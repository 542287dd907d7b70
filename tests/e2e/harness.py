"""End-to-end harness: the stand-ins in a thread (sandbox/harness.py), the real
`seva run` as a subprocess.

Tests talk to both only over HTTP, as a person at the console would.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from adapters.clock import OffsetClock, write_offset
from sandbox.harness import CHANNELS, CONFIG, HANDLE, TOKENS, USERS, Stand

__all__ = [
    "CHANNELS",
    "CONFIG",
    "HANDLE",
    "SEVA",
    "TOKENS",
    "USERS",
    "Bot",
    "Stand",
    "WorldClock",
    "wait_for",
]

SEVA = Path(sys.executable).with_name("seva")

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 15.0) -> T:
    """Polls `probe` until it returns something truthy; fails naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class WorldClock:
    """The controlled clock (adapters/clock.py) that the stand-ins and the bot share:
    moving it moves the real process through time without waiting."""

    # A fixed instant far from the day the suite runs, so no test's outcome depends on
    # the hour: 11:30 in India, two and a half hours into a shift of the 8-hour
    # rotations the tests configure (09:00, 17:00, 01:00).
    START = datetime(2027, 3, 10, 6, 0, tzinfo=UTC)

    def __init__(self, path: Path) -> None:
        self.path = path
        self._clock = OffsetClock(path)
        self.set(self.START)

    @property
    def env(self) -> dict[str, str]:
        """What the bot needs to run on this clock."""
        return {"SEVA_CLOCK_FILE": str(self.path)}

    def now(self) -> datetime:
        return self._clock.now()

    def timestamp(self) -> float:
        return self._clock.timestamp()

    def set(self, when: datetime) -> None:
        write_offset(self.path, (when - datetime.now(UTC)).total_seconds())

    def advance(self, **delta: float) -> None:
        self.set(self.now() + timedelta(**delta))


class Bot:
    """The real `seva run` process."""

    live: ClassVar[set[Bot]] = set()  # killed after each test, whatever happened in it

    def __init__(
        self,
        stand: Stand,
        workdir: Path,
        config: dict[str, Any] | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.stand = stand
        self.extra_env = extra_env or {}
        self.workdir = workdir
        self.config_path = workdir / "seva.yaml"
        self.config_path.write_text(yaml.safe_dump(config or CONFIG))
        self.db_url = f"sqlite:///{workdir / 'seva.db'}"
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = workdir / "seva.log"
        self.port: int | None = None
        self.starts = 0

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SEVA_", "X_", "SLACK_", "MATRIX_"))
        }
        env.update(TOKENS)
        env.update(
            SEVA_DATABASE_URL=self.db_url,
            SEVA_HTTP_HOST="127.0.0.1",
            SEVA_HTTP_PORT="0",
            X_API_BASE_URL=self.stand.sandbox.x_base_url,  # type: ignore[union-attr]
            SLACK_API_BASE_URL=self.stand.sandbox.slack_api_url,  # type: ignore[union-attr]
        )
        env.update(self.extra_env)
        return env

    def start(self) -> Bot:
        self.spawn()
        start_mark = self.starts

        def started() -> int | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"seva exited with {self.proc.returncode}:\n{self.log()}")
            text = self.log().split(f"--- start {start_mark}\n", 1)[-1]
            m = re.search(r"seva\.started http=127\.0\.0\.1:(\d+)", text)
            return int(m.group(1)) if m else None

        self.port = wait_for("seva to start", started, timeout=30)
        self.stand.set_events_url(f"http://127.0.0.1:{self.port}/slack/events")
        return self

    def spawn(self) -> subprocess.Popen[str]:
        """Starts the process without waiting for it to come up."""
        self.starts += 1
        log = self.log_path.open("a")
        log.write(f"\n--- start {self.starts}\n")
        log.flush()
        self.proc = subprocess.Popen(
            [str(SEVA), "run", "--config", str(self.config_path)],
            cwd=self.workdir,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        Bot.live.add(self)
        return self.proc

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def audit(self, ticket: int) -> list[tuple[str, str, str]]:
        """The ticket's audit log (actor, action, detail), as an operator would read it
        from the database."""
        path = self.db_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            rows = db.execute(
                "SELECT actor, action, detail FROM audit_log WHERE ticket = ? ORDER BY id",
                (ticket,),
            ).fetchall()
        return [tuple(r) for r in rows]

    def stop(self) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(20)
        self.proc = None
        Bot.live.discard(self)
        return code

    def kill(self) -> None:
        """kill -9: no clean-up of any kind."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(20)
            self.proc = None
        Bot.live.discard(self)
