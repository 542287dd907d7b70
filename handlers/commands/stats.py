"""Oversight: `stats [DEPT] [DAYS]`."""

from __future__ import annotations

from datetime import timedelta

from bot.config import Department
from bot.domain import Rich, Text
from bot.figures import Figures
from bot.ports import UnitOfWork
from handlers.commands import Args, CommandError, command
from handlers.context import Bridge
from handlers.figures import department_figures, figures_text

DEFAULT_DAYS = 7
MAX_DAYS = 90  # the queries stay bounded: a window, never the whole history


@command(
    "stats",
    "stats [DEPT] [DAYS]",
    "new, answered, closed, open; median and 90th-percentile first response",
)
async def stats(b: Bridge, args: Args) -> Rich:
    depts = b.config.departments
    days = DEFAULT_DAYS
    for word in args.words:
        if word.isdigit():
            days = int(word)
            if not 1 <= days <= MAX_DAYS:
                raise CommandError(f"DAYS must be from 1 to {MAX_DAYS}.")
        elif (d := b.config.department(word.casefold())) is not None:
            depts = [d]
        else:
            raise CommandError(f"{word!r} is neither a department nor a number of days.")
    per_dept = await b.store.run(_figures, depts, days)
    out = Rich.of(Text(f"Last {days} day(s)", bold=True))
    for dept, f in zip(depts, per_dept, strict=True):
        out += Rich.of(Text(f"\n{dept.name}: ", bold=True)) + figures_text(f)
    if len(depts) > 1:
        total = sum(per_dept, Figures())
        out += Rich.of(Text("\nAll departments: ", bold=True)) + figures_text(total)
    return out


def _figures(tx: UnitOfWork, depts: list[Department], days: int) -> list[Figures]:
    since = tx.now - timedelta(days=days)
    return [department_figures(tx, d, since, tx.now) for d in depts]
