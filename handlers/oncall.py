"""Who is on call now: the rotation (bot/rotation.py) with the overrides stored in the
database (`oncall set` / `oncall clear`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.config import Department
from bot.domain import ChatUserId, Shift
from bot.ports import UnitOfWork
from bot.rotation import current_and_next, on_call

# Overrides that ended longer ago than this are not read: none of them can bound a
# stretch of duty whose hand-off is still due (bot-side limits are shorter).
OVERRIDE_HORIZON = timedelta(days=7)


def duty(tx: UnitOfWork, dept: Department, when: datetime) -> Shift | None:
    """Who is on call for `dept` at `when`, and for which stretch."""
    return on_call(dept.oncall, tx.overrides(dept.id, when - OVERRIDE_HORIZON), when)


def duty_and_next(
    tx: UnitOfWork, dept: Department, when: datetime
) -> tuple[Shift | None, Shift | None]:
    """Who is on call at `when`, and who takes over after."""
    return current_and_next(dept.oncall, tx.overrides(dept.id, when - OVERRIDE_HORIZON), when)


def member_now(tx: UnitOfWork, dept: Department, when: datetime) -> ChatUserId | None:
    shift = duty(tx, dept, when)
    return shift.member if shift is not None else None
