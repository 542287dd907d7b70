"""Who is on call: pure arithmetic over the rotation, its overrides and the clock.

Shifts follow `oncall.shift_hours` from `oncall.starts`, member after member.

- Without `oncall.timezone` they are exact hours: a 24-hour rotation starting at 09:00
  +05:30 changes at 03:30 UTC every day, whatever any clock on a wall says.
- With a timezone they are wall-clock hours there: a shift that starts at 09:00 local
  starts at 09:00 local on both sides of a daylight-saving change, and the shift that
  spans the change is an hour shorter (spring) or longer (autumn).
- A wall time the clocks skip (02:30 when they jump from 02:00 to 03:00) starts its
  shift at the jump; a wall time they repeat (01:30 when they fall back) is its first
  occurrence. A shift shorter than the jump may so last no time at all, and is skipped.
- Before the first shift starts, the first member covers.

Overrides (`oncall set`) put someone else on call for a while; the newest wins where
several overlap. Whoever is on call, and since when, is one `Shift`: the hand-off at
each change is keyed on its start, so it must come out the same on every instance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from bot.config import Oncall
from bot.domain import Override, Shift


def shift_at(rotation: Oncall, when: datetime) -> Shift:
    """The rotation's shift covering `when` (overrides aside)."""
    n = _index(rotation, when)
    return Shift(
        member=rotation.members[n % len(rotation.members)],
        starts=_start(rotation, n),
        ends=_start(rotation, n + 1),
    )


def on_call(rotation: Oncall | None, overrides: Sequence[Override], when: datetime) -> Shift | None:
    """Who is on call at `when`, and for which stretch: the newest override covering it,
    else the rotation's shift, cut where an override that wins over it starts or ends.
    None when there is no rotation and no override."""
    covering = [o for o in overrides if o.starts <= when < o.ends]
    starts: datetime
    ends: datetime | None
    if covering:
        o = max(covering, key=lambda o: o.id)
        starts, ends = o.starts, o.ends
        beaten_by = [x for x in overrides if x.id > o.id]
        source = Shift(o.member, o.starts, o.ends, override=o.id, by=o.by)
    elif rotation is not None:
        source = shift_at(rotation, when)
        starts, ends = source.starts, source.ends
        beaten_by = list(overrides)
    else:
        return None
    # Nothing in `beaten_by` covers `when` (it would have won): each lies wholly before
    # or wholly after it, and the nearest ones bound this stretch.
    for x in beaten_by:
        if x.ends <= when and starts < x.ends:
            starts = x.ends
        if x.starts > when and (ends is None or x.starts < ends):
            ends = x.starts
    return Shift(source.member, starts, ends, override=source.override, by=source.by)


def current_and_next(
    rotation: Oncall | None, overrides: Sequence[Override], when: datetime
) -> tuple[Shift | None, Shift | None]:
    """Who is on call at `when`, and who takes over when that stretch ends."""
    now = on_call(rotation, overrides, when)
    if now is None or now.ends is None:
        return now, None
    return now, on_call(rotation, overrides, now.ends)


# --- the shifts' edges


def _index(rotation: Oncall, when: datetime) -> int:
    length = timedelta(hours=rotation.shift_hours)
    if rotation.timezone is None:
        return max(0, math.floor((when - rotation.starts) / length))
    # A first guess from the wall-clock distance, then exact on the real instants (the
    # guess is at most a shift or two off around a daylight-saving change).
    local = when.astimezone(ZoneInfo(rotation.timezone)).replace(tzinfo=None)
    n = max(0, math.floor((local - _wall_start(rotation)) / length))
    while n > 0 and _start(rotation, n) > when:
        n -= 1
    while _start(rotation, n + 1) <= when:
        n += 1
    return n


def _start(rotation: Oncall, n: int) -> datetime:
    """When shift `n` starts (shift 0 at `starts`), as an instant in UTC."""
    length = timedelta(hours=rotation.shift_hours)
    if rotation.timezone is None:
        return (rotation.starts + n * length).astimezone(UTC)
    return localize(_wall_start(rotation) + n * length, ZoneInfo(rotation.timezone))


def _wall_start(rotation: Oncall) -> datetime:
    """`starts` as a wall time in the rotation's zone (naive)."""
    assert rotation.timezone is not None
    starts = rotation.starts
    if starts.tzinfo is not None:
        starts = starts.astimezone(ZoneInfo(rotation.timezone))
    return starts.replace(tzinfo=None)


def localize(wall: datetime, zone: tzinfo) -> datetime:
    """A wall time in `zone` as an instant in UTC: a repeated time's first occurrence,
    and for a skipped time the moment the clocks jumped past it."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall(first, zone) == wall:
        return first
    # Skipped: the reading with the offset after the jump lies before the jump, the one
    # with the offset before it lies after; the jump is the first second between them
    # whose wall time is past `wall`.
    lo = math.floor(wall.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())
    hi = math.ceil(first.timestamp())
    if lo > hi:
        lo, hi = hi, lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall(datetime.fromtimestamp(mid, UTC), zone) > wall:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _wall(instant: datetime, zone: tzinfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)
