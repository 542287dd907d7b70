"""Figures about tickets, as people read them: spans of time, medians and percentiles
(pure; the queries that feed them are bounded and indexed, adapters/db/uow.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import timedelta


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
