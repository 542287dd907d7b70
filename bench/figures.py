"""Benchmark: the oversight figures on a desk with a million tickets.

    .venv/bin/python bench/figures.py [--tickets 1000000] [--database URL]

Fills a fresh database (SQLite by default; a PostgreSQL URL after `seva migrate`) with
a year of tickets over five departments, most of them closed, then times what reads
them: `stats` for 7, 30 and 90 days, a digest's figures and five oldest, a hand-off's
open count and oldest, the second escalation step's look-up and /metrics' open
tickets by department. Each is the median of several runs, in milliseconds; none may
grow with the history, only with the window it reads.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from adapters.db.store import Store  # noqa: E402
from adapters.db.tables import TicketRow  # noqa: E402
from bot.config import parse_config  # noqa: E402
from entrypoints import migrate  # noqa: E402
from handlers.figures import department_figures  # noqa: E402

DEPARTMENTS = ["health", "transport", "water", "power", "police"]
NOW = datetime(2026, 12, 1, 12, 30, tzinfo=UTC)
CONFIG = parse_config(
    {
        "departments": [
            {"id": d, "name": d.title(), "slack_channel": f"C0{d.upper()}"} for d in DEPARTMENTS
        ],
        "default_department": "health",
    },
    "bench",
)


class FixedClock:
    def now(self) -> datetime:
        return NOW


def fill(store: Store, n: int) -> None:
    """A year of tickets, newest last; 1 % still open, the rest answered and closed."""
    rng = random.Random(11)
    batch: list[dict[str, object]] = []
    started = time.perf_counter()
    for i in range(n):
        asked = NOW - timedelta(days=365) + timedelta(seconds=i * 365 * 86400 / n)
        is_open = rng.random() < 0.01
        answered = asked + timedelta(seconds=rng.lognormvariate(7, 1))  # a median of ~18 min
        closed = answered + timedelta(hours=rng.uniform(0.1, 48))
        batch.append(
            {
                "tweet_id": str(10**18 + i),
                "conversation_id": str(10**18 + i),
                "department": DEPARTMENTS[i % len(DEPARTMENTS)],
                "state": "open" if is_open else "closed",
                "author_id": str(2000 + i % 5000),
                "author_username": f"citizen{i % 5000}",
                "text": "@SevaHelp a question about oxygen beds",
                "created_at": asked,
                "platform": "slack",
                "channel": "C0" + DEPARTMENTS[i % len(DEPARTMENTS)].upper(),
                "root": f"{1700000000 + i}.000100",
                "oncall": "U0AGENT1",
                "reply_to": str(10**18 + i),
                "first_response_at": None if is_open and rng.random() < 0.5 else answered,
                "closed_at": None if is_open else closed,
                "escalated_at": None,
            }
        )
        if len(batch) == 50_000:
            _insert(store, batch)
            batch = []
    if batch:
        _insert(store, batch)
    print(f"filled {n:,} tickets in {time.perf_counter() - started:.0f} s")


def _insert(store: Store, rows: list[dict[str, object]]) -> None:
    with store.tx() as tx:
        tx.s.execute(insert(TicketRow), rows)


def timed(label: str, fn: Callable[[], object], runs: int = 7) -> None:
    fn()  # warm the caches: the bot asks the same questions every day
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    print(f"{label:<58} {statistics.median(samples):8.1f} ms  (max {max(samples):.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--database", help="a fresh database URL (default: a new SQLite file)")
    args = parser.parse_args()
    url = args.database or f"sqlite:///{Path(tempfile.mkdtemp()) / 'figures.db'}"
    store = Store(url, clock=FixedClock())
    migrate.upgrade(store.engine)
    fill(store, args.tickets)
    health = CONFIG.departments[0]

    def stats(days: int) -> Callable[[], object]:
        def run() -> object:
            with store.tx() as tx:
                since = tx.now - timedelta(days=days)
                return [department_figures(tx, d, since, tx.now) for d in CONFIG.departments]

        return run

    def digest() -> object:
        with store.tx() as tx:
            f = department_figures(tx, health, tx.now - timedelta(days=1), tx.now)
            return f, tx.oldest_open(health.id, 5)

    def handoff() -> object:
        with store.tx() as tx:
            return tx.open_summary(health.id)

    def second_step() -> object:
        with store.tx() as tx:
            return tx.escalated_again_due(health.id, tx.now - timedelta(hours=1))

    print(f"database: {store.engine.dialect.name}; {len(DEPARTMENTS)} departments")
    for days in (7, 30, 90):
        timed(f"stats, every department, {days} days", stats(days))
    timed("digest: one department's day and five oldest open", digest)
    timed("hand-off: one department's open count and oldest", handoff)
    timed("second escalation step: one department's look-up", second_step)

    def open_gauge() -> object:
        with store.tx() as tx:
            return tx.open_by_department()

    timed("/metrics: open tickets by department", open_gauge)
    store.dispose()


if __name__ == "__main__":
    main()
