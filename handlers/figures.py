"""Oversight figures: `stats`, and the daily digest each department's channel gets.

Every figure reads one department and a window of days through an index (the store's
figure queries), so a desk with a million tickets answers as fast as a new one.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from bot.config import Config, Department
from bot.domain import ChannelId, Link, Outgoing, Rich, Text, Ticket
from bot.figures import Figures, digest_day, figures, minutes_text, span
from bot.outbox import digest_key
from bot.ports import UnitOfWork
from handlers.context import Bridge, queue_scheduled

log = logging.getLogger("seva." + __name__)

OLDEST_SHOWN = 5
# A digest still worth posting this late (the bot was down at `digest.at`).
DIGEST_LATE_LIMIT = timedelta(hours=6)


def department_figures(
    tx: UnitOfWork, dept: Department, since: datetime, until: datetime
) -> Figures:
    """`dept`'s tickets asked, first answered and closed in (since, until], open now,
    their first-response times, and how many missed the target (the department's
    `escalate_after_minutes`: the wait it promises before escalating)."""
    target = dept.escalate_after
    waiting = tx.waiting_since(dept.id, tx.now - target) if target is not None else 0
    return figures(
        tx.ticket_counts(dept.id, since, until),
        tx.open_summary(dept.id)[0],
        tx.first_responses(dept.id, since, until),
        waiting,
        target,
    )


def figures_text(f: Figures, *, open_label: str = "open now") -> Rich:
    return Rich.of(
        Text(
            f"new {f.new} · answered {f.answered} · closed {f.closed} · {open_label} {f.open}\n"
            f"first response: median {minutes_text(f.median)} · "
            f"90th percentile {minutes_text(f.p90)} · {f.past_target} past target"
        )
    )


# --- the daily digest


async def post_digests(b: Bridge) -> int:
    """Each department's digest, once a day at `digest.at` in `digest.timezone`: the
    figures of the day before it and the five oldest open tickets.

    Once whichever instance gets there first, across restarts: the outbox key is the
    department and the local date, unique in the database. A digest the bot slept
    through is posted when it comes back, up to DIGEST_LATE_LIMIT late.
    """
    if b.config.digest is None:
        return 0
    config = b.config
    return await queue_scheduled(
        b, lambda tx, known: _queue_digests(tx, config, known), "digest.raced"
    )


def _queue_digests(tx: UnitOfWork, config: Config, known: frozenset[str]) -> list[tuple[str, bool]]:
    assert config.digest is not None
    day, since, until = digest_day(config.digest.at, config.digest.zone, tx.now)
    if tx.now - until > DIGEST_LATE_LIMIT:
        return []
    out = []
    for dept in config.departments:
        key = digest_key(dept.id, day)
        if key in known:
            continue
        f = department_figures(tx, dept, since, until)
        oldest = tx.oldest_open(dept.id, OLDEST_SHOWN)
        label = f"{until.astimezone(config.digest.zone):%Y-%m-%d %H:%M %Z}"
        body = digest_body(dept, label, f, oldest, tx.now)
        new = tx.enqueue(Outgoing(key, ChannelId(dept.channel), body), dept.platform, False)
        if new:
            log.info(
                "digest.queued department=%s day=%s new=%d answered=%d closed=%d open=%d",
                dept.id,
                day.isoformat(),
                f.new,
                f.answered,
                f.closed,
                f.open,
            )
        out.append((key, new))
    return out


def digest_body(
    dept: Department, until: str, f: Figures, oldest: list[Ticket], now: datetime
) -> Rich:
    body = Rich.of(
        Text("Daily digest", bold=True), Text(f" for {dept.name}, the 24 hours to {until}:\n")
    ) + figures_text(f, open_label="still open")
    if not oldest:
        return body + Rich.of(Text("\nNo open tickets."))
    body += Rich.of(Text(f"\nOldest open ({len(oldest)} of {f.open}):"))
    for t in oldest:
        body += Rich.of(
            Text("\n"),
            Link(t.url, f"#{t.number}"),
            Text(f" · {span(now - t.created_at)} · @{t.author_username}: {_snippet(t.text)}"),
        )
    return body


def _snippet(text: str, n: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"
