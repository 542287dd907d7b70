"""Figures about tickets, as people read them: spans of time, medians and percentiles
(pure; the queries that feed them are bounded and indexed, adapters/db/uow.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from bot.rotation import localize


def span(delta: timedelta) -> str:
    """`45m`, `3h 5m`, `2d 4h`: as long as it needs to be, no longer."""
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    return f"{hours // 24}d {hours % 24}h"


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """The `p`-th percentile (0-100) by the nearest-rank method: always a value that
    occurred, so "90% of tickets had a first answer within X" is literally true."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True, slots=True)
class Figures:
    """Tickets over a window: asked (`new`), first answered and closed in it; `open`
    now; the first-response times of those answered in it (seconds, sorted); and how
    many missed the department's target (answered later than it, or still waiting
    longer than it now)."""

    new: int = 0
    answered: int = 0
    closed: int = 0
    open: int = 0
    past_target: int = 0
    first_responses: tuple[float, ...] = ()

    @property
    def median(self) -> float | None:
        return percentile(self.first_responses, 50)

    @property
    def p90(self) -> float | None:
        return percentile(self.first_responses, 90)

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            self.new + other.new,
            self.answered + other.answered,
            self.closed + other.closed,
            self.open + other.open,
            self.past_target + other.past_target,
            tuple(sorted(self.first_responses + other.first_responses)),
        )


def figures(
    counts: tuple[int, int, int],
    open_now: int,
    first_responses: Sequence[float],
    waiting_past_target: int,
    target: timedelta | None,
) -> Figures:
    """One department's figures from what the store counted."""
    times = tuple(sorted(first_responses))
    late = 0
    if target is not None:
        late = sum(1 for t in times if t > target.total_seconds()) + waiting_past_target
    new, answered, closed = counts
    return Figures(new, answered, closed, open_now, late, times)


def minutes_text(seconds: float | None) -> str:
    return "–" if seconds is None else span(timedelta(seconds=seconds))


# --- the daily digest's day


def digest_day(at: time, zone: tzinfo, now: datetime) -> tuple[date, datetime, datetime]:
    """The latest digest due at or before `now`: its local date, and the day it covers,
    (the previous `at`, this `at`], as instants. Daylight saving makes that day 23 or
    25 hours long where the zone has it (bot.rotation.localize decides the edges)."""
    local = now.astimezone(zone)
    day = local.date()
    until = localize(datetime.combine(day, at), zone)
    if until > now:
        day -= timedelta(days=1)
        until = localize(datetime.combine(day, at), zone)
    since = localize(datetime.combine(day - timedelta(days=1), at), zone)
    return day, since, until
