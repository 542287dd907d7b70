"""Escalation: derived from stored tickets, so it survives restarts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from bot.config import Department
from bot.domain import ACTOR_BOT, Audit, ChatUserId, Mention, Outgoing, Rich, Text, Ticket
from bot.outbox import ThreadMark, escalate_again_key, escalate_key
from bot.ports import Conflict, Count, UnitOfWork
from handlers.context import Bridge, queue_mark
from handlers.oncall import member_now

log = logging.getLogger("seva." + __name__)


async def escalate(b: Bridge) -> int:
    """One in-thread escalation for each ticket unanswered past its department's limit."""
    escalated = await b.store.run(_escalate_due, b, b.clock.now())
    if escalated:
        b.metrics.count(Count.ESCALATIONS, len(escalated))
        b.kick()
    return len(escalated)


def _escalate_due(tx: UnitOfWork, b: Bridge, now: datetime) -> list[Ticket]:
    """Marks and queues every escalation now due, in one unit of work; the tickets."""
    escalated = []
    for dept in b.config.departments:
        if not dept.escalate_to:
            continue
        for t, after in _unanswered(tx, dept, now):
            if not tx.mark_escalated(t.number):
                continue
            tx.audit(t.number, ACTOR_BOT, Audit.ESCALATED)
            headline = Rich.of(
                Text("Escalation: ", bold=True),
                Text(f"{'urgent ' if t.urgent else ''}ticket #{t.number} has had no public "),
                Text(f"reply for {int(after.total_seconds() // 60)} minutes. "),
            )
            _queue_step(tx, dept, t, escalate_key(t.number), headline, dept.escalate_to)
            queue_mark(tx, t, ThreadMark.ESCALATED)
            escalated.append(t)
            log.info("ticket.escalated ticket=%d department=%s", t.number, dept.id)
    return escalated


def _unanswered(tx: UnitOfWork, dept: Department, now: datetime) -> list[tuple[Ticket, timedelta]]:
    """The department's tickets due for their escalation, each with the limit it passed:
    `escalate_urgent_after_minutes` for urgent ones, `escalate_after_minutes` for the
    rest (either may be off)."""
    due: dict[int, tuple[Ticket, timedelta]] = {}
    if dept.escalate_after is not None:
        for t in tx.unanswered_before(dept.id, now - dept.escalate_after):
            due[t.number] = (t, dept.escalate_after)
    if dept.escalate_urgent_after is not None:
        for t in tx.unanswered_before(dept.id, now - dept.escalate_urgent_after, urgent_only=True):
            due[t.number] = (t, dept.escalate_urgent_after)
    return [due[n] for n in sorted(due)]


def on_call_note(tx: UnitOfWork, dept: Department) -> Rich:
    """Who is on call now (overrides included), mentioned beside the escalation."""
    member = member_now(tx, dept, tx.now)
    if member is None:
        return Rich()
    return Rich.of(Text(" (on call: "), Mention(member), Text(")"))


# --- the second step (escalate_again_after_minutes, escalate_again_to)


async def escalate_again(b: Bridge) -> int:
    """A second in-thread escalation, mentioning `escalate_again_to` (and whoever is on
    call), for each ticket escalated once and still without a public reply
    `escalate_again_after` after the citizen asked.

    Derived from stored tickets like the first step, so it survives restarts; at most
    once per ticket (`escalated_again_at` set by compare-and-set, and the outbox key
    `escalate2:N` unique), whichever instance gets there first.
    """
    try:
        stepped = await b.store.run(_second_steps, b.config.departments)
    except Conflict:  # another instance queued the same step a moment earlier
        log.info("ticket.escalated_again_raced")
        return 0
    if stepped:
        b.metrics.count(Count.ESCALATIONS, stepped)
        b.kick()
    return stepped


def _second_steps(tx: UnitOfWork, departments: list[Department]) -> int:
    n = 0
    for dept in departments:
        after = dept.escalate_again_after
        if after is None or not dept.escalate_again_to:
            continue
        for t in tx.escalated_again_due(dept.id, tx.now - after):
            if not tx.mark_escalated_again(t.number):
                continue
            tx.audit(t.number, ACTOR_BOT, Audit.ESCALATED, "second step")
            headline = Rich.of(
                Text("Escalation, second step: ", bold=True),
                Text(f"ticket #{t.number} still has no public reply after "),
                Text(f"{int(after.total_seconds() // 60)} minutes. "),
            )
            _queue_step(tx, dept, t, escalate_again_key(t.number), headline, dept.escalate_again_to)
            n += 1
            log.info("ticket.escalated_again ticket=%d department=%s", t.number, dept.id)
    return n


def _queue_step(
    tx: UnitOfWork,
    dept: Department,
    t: Ticket,
    key: str,
    headline: Rich,
    to: Sequence[ChatUserId],
) -> None:
    """Queues one escalation step in the ticket's thread: its headline, whom it calls
    on, and who is on call."""
    body = headline
    for i, user in enumerate(to):
        body += Rich.of(Text(", " if i else ""), Mention(user))
    body += on_call_note(tx, dept)
    tx.enqueue(Outgoing(key, t.channel, body, ticket=t.number), t.platform, True)
