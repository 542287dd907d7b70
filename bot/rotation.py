"""Who is on call: pure arithmetic over the rotation and the clock."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from bot.config import Oncall
from bot.domain import Shift


def shift_at(rotation: Oncall, when: datetime) -> Shift:
    """The shift covering `when`; before the first shift starts, the first member covers."""
    length = timedelta(hours=rotation.shift_hours)
    n = max(0, math.floor((when - rotation.starts) / length))
    starts = rotation.starts + n * length
    member = rotation.members[n % len(rotation.members)]
    return Shift(member=member, starts=starts, ends=starts + length)


def current_and_next(rotation: Oncall, when: datetime) -> tuple[Shift, Shift]:
    now = shift_at(rotation, when)
    return now, shift_at(rotation, now.ends)
