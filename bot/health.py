"""What each part of the bot is going through, for /healthz: ok, or what is wrong and
since when. Pure bookkeeping (no I/O): the handlers record outcomes as they meet
them, the composition root reads it.

A part is `ok`, `retrying` (a call failed in a way a retry can cure: a 5xx, a rate
limit, a timeout; nothing is dropped), `paused` (the platform refused our credentials:
nothing is sent there until a call succeeds again) or `down` (the database cannot be
written: events are refused so that their senders deliver them again later).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

log = logging.getLogger("seva." + __name__)


class Clock(Protocol):
    def now(self) -> datetime: ...


class State(enum.StrEnum):
    OK = "ok"
    RETRYING = "retrying"
    PAUSED = "paused"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Condition:
    state: State
    why: str | None = None
    since: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.state is State.OK

    def as_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "state": self.state.value,
            "why": self.why,
            "since": self.since.isoformat() if self.since else None,
        }


OK = Condition(State.OK)


class Health:
    """The condition of each named part ("slack", "x.posting", …); a change of state is
    logged once, as one structured line, not at every failed retry."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._parts: dict[str, Condition] = {}

    def __getitem__(self, part: str) -> Condition:
        return self._parts.get(part, OK)

    def ok(self, part: str) -> None:
        before = self[part]
        if before.ok:
            return
        self._parts[part] = OK
        log.warning("health.recovered part=%s was=%s why=%s", part, before.state, before.why)

    def retrying(self, part: str, why: str) -> None:
        self._set(part, State.RETRYING, why)

    def paused(self, part: str, why: str) -> None:
        self._set(part, State.PAUSED, why)

    def down(self, part: str, why: str) -> None:
        self._set(part, State.DOWN, why)

    def _set(self, part: str, state: State, why: str) -> None:
        before = self[part]
        since = before.since if before.state is state and before.since else self._clock.now()
        self._parts[part] = Condition(state, why, since)
        if before.state is not state:
            log.warning("health.changed part=%s state=%s why=%s", part, state, why)

    def parts(self) -> dict[str, Condition]:
        return dict(self._parts)
