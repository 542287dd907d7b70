"""Escalation: derived from stored tickets, so it survives restarts."""

from __future__ import annotations

import logging
from datetime import datetime

from bot.domain import ACTOR_BOT, Audit, Mention, Outgoing, Rich, Text, Ticket
from bot.outbox import ThreadMark, escalate_key
from bot.ports import Count, UnitOfWork
from handlers.context import Bridge

log = logging.getLogger("seva." + __name__)


async def escalate(b: Bridge) -> int:
    """One in-thread escalation for each ticket unanswered past its department's limit."""
    escalated = await b.store.run(_escalate_due, b, b.clock.now())
    if escalated:
        b.metrics.count(Count.ESCALATIONS, len(escalated))
        b.kick()
    for t in escalated:
        await b.mirror(t, ThreadMark.ESCALATED)
    return len(escalated)


def _escalate_due(tx: UnitOfWork, b: Bridge, now: datetime) -> list[Ticket]:
    """Marks and queues every escalation now due, in one unit of work; the tickets."""
    escalated = []
    for dept in b.config.departments:
        if dept.escalate_after is None or not dept.escalate_to:
            continue
        for t in tx.unanswered_before(dept.id, now - dept.escalate_after):
            if not tx.mark_escalated(t.number):
                continue
            tx.audit(t.number, ACTOR_BOT, Audit.ESCALATED)
            body = Rich.of(
                Text("Escalation: ", bold=True),
                Text(f"ticket #{t.number} has had no public reply for "),
                Text(f"{int(dept.escalate_after.total_seconds() // 60)} minutes. "),
            )
            for i, user in enumerate(dept.escalate_to):
                body += Rich.of(Text(", " if i else ""), Mention(user))
            tx.enqueue(
                Outgoing(escalate_key(t.number), t.channel, body, ticket=t.number),
                t.platform,
                True,
            )
            escalated.append(t)
            log.info("ticket.escalated ticket=%d department=%s", t.number, dept.id)
    return escalated
