"""The controlled clock: the system clock plus an offset kept in a file, so the sandbox
and the end-to-end tests can move the real `seva run` process through time (a shift
change, a digest at 18:00, an escalation 30 minutes on) without waiting.

Production runs on `handlers.context.SystemClock`; this clock is used only when
`SEVA_CLOCK_FILE` names a file, and the bot says so in its log and in `/healthz`. It
moves only what the bot calls *now* (`bot.ports.Clock`): Slack's request signatures,
OAuth timestamps and the scheduler's ticks stay on the system clock, because the
remotes (and bolt) check them against their own.

The file holds one number: seconds added to the system clock (`86400` runs one day
ahead). It is read again whenever it changes, so a test moves time while the process
runs; `write_offset` replaces it atomically, so a reader never sees half a number.
"""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

log = logging.getLogger("seva." + __name__)


class ClockFileError(Exception):
    """The clock file holds something other than a number of seconds."""


def read_offset(path: str | os.PathLike[str]) -> float:
    """The offset in `path`; 0 when the file does not exist (yet)."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise ClockFileError(f"{path}: expected a number of seconds, found {text[:40]!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ClockFileError(f"{path}: expected a finite number of seconds")
    return value


def write_offset(path: str | os.PathLike[str], seconds: float) -> None:
    """Replaces the offset in one rename, so a reader sees the old or the new value."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".clock-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f"{seconds:.6f}\n")
    os.replace(tmp, target)


class OffsetClock:
    """`bot.ports.Clock`: the system clock plus the offset in `path`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._seen: tuple[int, int, int] | None = None  # inode, mtime, size last read
        self._offset = read_offset(self.path)  # a bad file at start-up is an error

    def offset(self) -> float:
        """Seconds ahead of the system clock, re-read when the file changed."""
        try:
            st = self.path.stat()
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            seen = (0, 0, 0)
        if seen != self._seen:
            try:
                self._offset = read_offset(self.path)
                self._seen = seen
                log.info("clock.moved offset_seconds=%.3f", self._offset)
            except (ClockFileError, OSError) as e:
                # Keep the last good value; a test writing garbage sees it in the log.
                log.error("clock.unreadable file=%s error=%s", self.path, e)
                self._seen = seen
        return self._offset

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset())

    def timestamp(self) -> float:
        """Now as Unix seconds: the stand-ins' clock (`sandbox` takes a callable)."""
        return self.now().timestamp()
