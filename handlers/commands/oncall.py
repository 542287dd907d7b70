"""Who is on call: `oncall [dept]`, and the overrides `oncall set` / `oncall clear`."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, tzinfo

from bot.config import Department
from bot.domain import Audit, ChatUserId, Mention, Rich, Shift, Text
from bot.ports import UnitOfWork
from bot.rotation import shift_at
from handlers.commands import Args, CommandError, command, require_may_change, user_arg
from handlers.context import Bridge
from handlers.oncall import duty, duty_and_next

# An override longer than this is more likely a typo (hours for days) than a plan.
MAX_OVERRIDE_HOURS = 24 * 31


@command("oncall", "oncall [dept]", "who is on call now and next")
async def oncall(b: Bridge, args: Args) -> Rich:
    depts = b.config.departments
    if args.words:
        d = b.config.department(args.words[0].casefold())
        if d is None:
            raise CommandError(f"There is no department {args.words[0]!r}.")
        depts = [d]
    shifts = await b.store.run(_shifts, depts)
    out = Rich()
    for i, (d, (cur, nxt)) in enumerate(zip(depts, shifts, strict=True)):
        out += Rich.of(Text("\n" if i else ""), Text(d.name, bold=True), Text(": "))
        if cur is None:
            out += Rich.of(Text("nobody (no rotation configured)"))
            continue
        out += _stretch(cur, _zone(d))
        if nxt is not None:
            out += Rich.of(Text(", then "), Mention(nxt.member))
    return out


def _shifts(tx: UnitOfWork, depts: list[Department]) -> list[tuple[Shift | None, Shift | None]]:
    return [duty_and_next(tx, d, tx.now) for d in depts]


@command(
    "oncall set",
    "oncall set @user [HOURS] [DEPT]",
    "put someone on call instead of the rotation (default: until the shift ends)",
    changes=True,
)
async def oncall_set(b: Bridge, args: Args) -> Rich:
    if not args.words:
        raise CommandError("Whom to put on call?")
    member = user_arg(args.words.pop(0))
    hours: float | None = None
    if args.words and _is_number(args.words[0]):
        hours = float(args.words.pop(0))
        if not 0 < hours <= MAX_OVERRIDE_HOURS:
            raise CommandError(f"HOURS must be more than 0 and at most {MAX_OVERRIDE_HOURS}.")
    dept = _department(b, args)
    require_may_change(b, args, dept)
    if hours is None and dept.oncall is None:
        raise CommandError(f"{dept.name} has no rotation, so say for how many hours.")
    result = await b.store.run(_set, dept, member, hours, args.ctx.user)
    return Rich.of(Mention(member), Text(f" is on call for {dept.name} ")) + _until(
        result, _zone(dept)
    )


def _set(
    tx: UnitOfWork, dept: Department, member: ChatUserId, hours: float | None, by: ChatUserId
) -> Shift:
    now = tx.now
    if hours is not None:
        ends = now + timedelta(hours=hours)
    else:
        assert dept.oncall is not None
        shift_end = shift_at(dept.oncall, now).ends
        assert shift_end is not None
        ends = shift_end
    o = tx.add_override(dept.id, member, now, ends, by)
    tx.audit(None, by, Audit.ONCALL_SET, f"{dept.id}: {member} until {ends.isoformat()}")
    shift = duty(tx, dept, now)
    assert shift is not None and shift.override == o.id
    return shift


@command(
    "oncall clear",
    "oncall clear [DEPT]",
    "end the on-call overrides: the rotation decides again",
    changes=True,
)
async def oncall_clear(b: Bridge, args: Args) -> Rich:
    dept = _department(b, args)
    require_may_change(b, args, dept)
    cleared, now = await b.store.run(_clear, dept, args.ctx.user)
    if not cleared:
        return Rich.of(Text(f"{dept.name} has no override to clear."))
    out = Rich.of(Text(f"Override cleared for {dept.name}. On call now: "))
    if now is None:
        return out + Rich.of(Text("nobody (no rotation configured)."))
    return out + _stretch(now, _zone(dept))


def _clear(tx: UnitOfWork, dept: Department, by: ChatUserId) -> tuple[int, Shift | None]:
    cleared = tx.clear_overrides(dept.id, by)
    if cleared:
        who = ", ".join(o.member for o in cleared)
        tx.audit(None, by, Audit.ONCALL_CLEARED, f"{dept.id}: {who}")
    return len(cleared), duty(tx, dept, tx.now)


# --- arguments and wording


def _department(b: Bridge, args: Args) -> Department:
    """The department named last, else the one whose channel or room this is."""
    if args.words:
        word = args.words.pop(0)
        d = b.config.department(word.casefold())
        if d is None:
            raise CommandError(f"There is no department {word!r}.")
        if args.words:
            raise CommandError(f"{' '.join(args.words)!r}: unexpected.")
        return d
    here = [
        d
        for d in b.config.departments
        if d.platform == args.ctx.platform and d.channel == args.ctx.channel
    ]
    if len(here) != 1:
        raise CommandError("Which department? Name it.")
    return here[0]


def _is_number(word: str) -> bool:
    try:
        return math.isfinite(float(word))
    except ValueError:
        return False


def _zone(dept: Department) -> tzinfo | None:
    return dept.oncall.zone if dept.oncall is not None else None


def _stretch(shift: Shift, zone: tzinfo | None) -> Rich:
    return Rich.of(Mention(shift.member), Text(" ")) + _until(shift, zone)


def _until(shift: Shift, zone: tzinfo | None) -> Rich:
    out = Rich.of(Text(f"until {_when(shift.ends, zone)}" if shift.ends else "for now"))
    if shift.by is not None:
        out += Rich.of(Text(" (override by "), Mention(shift.by), Text(")"))
    return out


def _when(t: datetime, zone: tzinfo | None) -> str:
    return t.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z").strip()
