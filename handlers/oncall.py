"""Who is on call: the rotation (bot/rotation.py) with the overrides stored in the
database (`oncall set` / `oncall clear`); the hand-off at each change, and the Slack
user group kept equal to whoever is on call."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot.config import Department
from bot.domain import ChannelId, ChatUserId, Mention, Outgoing, Rich, Shift, Text, Ticket
from bot.figures import span
from bot.outbox import handoff_key
from bot.ports import PlatformRefused, RateLimited, Unavailable, UnitOfWork
from bot.rotation import current_and_next, on_call
from handlers.context import Bridge, queue_scheduled

log = logging.getLogger("seva." + __name__)

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


# --- the hand-off at each change of who is on call

# A hand-off still worth posting this late (the bot was down at the change); an older
# change is old news. Shorter than OVERRIDE_HORIZON, so every instance agrees on it.
HANDOFF_LATE_LIMIT = timedelta(hours=6)


async def hand_off(b: Bridge) -> int:
    """One message in each department's channel or room when who is on call changes:
    who it is now, the open tickets' count and the oldest.

    Exactly once whichever instance runs it, across restarts: the post's outbox key is
    the department and the stretch's start (`handoff_key`), unique in the database; a
    restart posts a change it slept through, up to HANDOFF_LATE_LIMIT late.
    """
    departments = b.config.departments
    return await queue_scheduled(
        b, lambda tx, known: _queue_handoffs(tx, departments, known), "oncall.handoff_raced"
    )


def _queue_handoffs(
    tx: UnitOfWork, departments: list[Department], known: frozenset[str]
) -> list[tuple[str, bool]]:
    out = []
    for dept in departments:
        shift = duty(tx, dept, tx.now)
        if shift is None or shift.starts > tx.now or tx.now - shift.starts > HANDOFF_LATE_LIMIT:
            continue
        key = handoff_key(dept.id, shift.starts)
        if key in known:
            continue
        count, oldest = tx.open_summary(dept.id)
        body = handoff_body(dept, shift, count, oldest, tx.now)
        new = tx.enqueue(Outgoing(key, ChannelId(dept.channel), body), dept.platform, False)
        if new:
            log.info(
                "oncall.handoff department=%s member=%s since=%s open=%d",
                dept.id,
                shift.member,
                shift.starts.isoformat(),
                count,
            )
        out.append((key, new))
    return out


def handoff_body(
    dept: Department, shift: Shift, count: int, oldest: Ticket | None, now: datetime
) -> Rich:
    zone = dept.oncall.zone if dept.oncall is not None else None
    body = Rich.of(
        Text("On call now", bold=True), Text(f" for {dept.name}: "), Mention(shift.member)
    )
    if shift.ends is not None:
        body += Rich.of(Text(f" until {shift.ends.astimezone(zone):%Y-%m-%d %H:%M %Z}".rstrip()))
    if shift.by is not None:
        body += Rich.of(Text(" (override by "), Mention(shift.by), Text(")"))
    if oldest is None:
        return body + Rich.of(Text(".\nNo open tickets."))
    return body + Rich.of(
        Text(f".\nOpen tickets: {count}; the oldest is #{oldest.number}, "),
        Text(f"asked {span(now - oldest.created_at)} ago by @{oldest.author_username}."),
    )


# --- the Slack user group that pages whoever is on call

USERGROUP_RECHECK = timedelta(minutes=10)  # someone may have edited the group by hand
USERGROUP_RETRY = timedelta(minutes=1)


async def sync_usergroups(b: Bridge) -> int:
    """Keeps each `oncall.slack_usergroup` equal to whoever is on call, so
    `@health-oncall` anywhere in Slack reaches them. Looks at the group when who is on
    call changed and every USERGROUP_RECHECK, and updates it only when it differs;
    idempotent, so several instances may all do it. Returns the groups it changed."""
    depts = [d for d in b.config.departments if d.oncall and d.oncall.slack_usergroup]
    if not depts or b.usergroups is None:
        return 0
    members = await b.store.run(_members_now, depts)
    now = b.clock.now()
    changed = 0
    for dept, member in zip(depts, members, strict=True):
        assert dept.oncall is not None and dept.oncall.slack_usergroup is not None
        group = dept.oncall.slack_usergroup
        if member is None:
            continue
        synced, due = b.usergroups_synced.get(group, (None, now))
        if synced == member and now < due:
            continue
        if synced is None and now < due:  # waiting after a failure
            continue
        try:
            current = await b.usergroups.group_members(group)
            if current != [member]:
                await b.usergroups.set_group_members(group, [member])
                changed += 1
                log.info(
                    "oncall.usergroup_updated department=%s group=%s members=%s was=%s",
                    dept.id,
                    group,
                    member,
                    ",".join(current) or "-",
                )
            b.usergroups_synced[group] = (member, now + USERGROUP_RECHECK)
        except (RateLimited, Unavailable, PlatformRefused) as e:
            retry = e.until if isinstance(e, RateLimited) else now + USERGROUP_RETRY
            b.usergroups_synced[group] = (None, retry)
            log.warning("oncall.usergroup_failed group=%s error=%s", group, e)
    return changed


def _members_now(tx: UnitOfWork, depts: list[Department]) -> list[ChatUserId | None]:
    return [member_now(tx, d, tx.now) for d in depts]
