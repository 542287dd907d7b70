"""The retention purge (SPEC section 5): with `safety.retention_days`, closed tickets
older than that lose the citizen's text and name, once a day, in bounded batches.

Each batch is one transaction of at most BATCH tickets, so the database is never held
for long and a crash loses at most one batch's work, done again the next time. A run
stops after MAX_BATCHES; what is left waits for the next day. The store says what is
forgotten and what is kept (adapters/db/retention.py).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot.domain import ACTOR_BOT, Audit
from bot.ports import UnitOfWork
from handlers.context import Bridge

log = logging.getLogger("seva." + __name__)

LEASE = "retention.purge"
BATCH = 500
MAX_BATCHES = 200  # 100,000 tickets a run


async def purge(b: Bridge) -> int:
    """One run: purges every closed ticket past the retention period (up to the bound);
    how many were purged. Nothing when `safety.retention_days` is not set."""
    days = b.config.safety.retention_days
    if days is None:
        return 0
    if b.shared and not await b.store.run(
        lambda tx: tx.hold_lease(LEASE, b.instance, timedelta(hours=1))
    ):
        return 0  # another instance is purging
    cutoff = b.clock.now() - timedelta(days=days)
    total = 0
    for _ in range(MAX_BATCHES):
        done = await b.store.run(_purge_batch, cutoff, days)
        total += done
        if done < BATCH:
            break
    if total:
        log.info("retention.purged tickets=%d closed_before=%s", total, cutoff.isoformat())
    return total


def _purge_batch(tx: UnitOfWork, cutoff: datetime, days: int) -> int:
    due = tx.purge_due(cutoff, BATCH)
    tx.purge_tickets(due)
    for number, _ in due:
        tx.forget_search(number)
        tx.audit(number, ACTOR_BOT, Audit.PURGED, f"closed over {days} days ago")
    if due:
        tx.forget_unused_terms()
    return len(due)
