"""Work that must not grow with history: every query the bot runs on a timer (and on
every reply, scrape or `list`) reads through an index and is bounded, so a database of
a year and a half of tickets costs what one of a day does (issue 13).

Each unit of work runs for real while its statements are recorded, then each is
EXPLAINed: on SQLite, with the statistics a year's history gives the planner, no
table or index is SCANned whole (a SEARCH through an index or the key is fine), and on
PostgreSQL, with sequential scans priced out, none is a Seq Scan and every index scan
has an Index Cond.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from adapters.db.store import Store
from bot.domain import ChannelId, ChatUserId, DepartmentId
from bot.ports import NewTicket, UnitOfWork
from tests.conftest import migrated_store
from tests.fakes import FakeClock, tweet

Unit = Callable[[UnitOfWork], Any]

# The periodic units of work, and the ones every reply, scrape or command runs.
UNITS: dict[str, Unit] = {
    "due lanes (delivery, every second)": lambda tx: tx.due_lanes(),
    "claim posts (delivery)": lambda tx: tx.claim_posts("slack", "C1", 20),
    "due reply parts (every second)": lambda tx: tx.due_parts(),
    "waiting replies (X posting paused)": lambda tx: tx.waiting_replies(),
    "expire claims (every 10 s)": lambda tx: tx.expire_claims(timedelta(minutes=2)),
    "claim inbox events (every second)": lambda tx: tx.claim_events("slack", 20),
    "forget old events (hourly)": lambda tx: tx.forget_events_before(tx.now),
    "escalation scan (every 30 s)": lambda tx: tx.unanswered_before(
        "health", tx.now - timedelta(minutes=30)
    ),
    "urgent escalation scan": lambda tx: tx.unanswered_before(
        "health", tx.now - timedelta(minutes=5), urgent_only=True
    ),
    "poll lease and cursor": lambda tx: (
        tx.hold_lease("x.poll", "me", timedelta(seconds=60)),
        tx.get("x.since_id"),
    ),
    "metrics counts (each scrape)": lambda tx: (tx.counts(), tx.open_by_department()),
    "list": lambda tx: tx.tickets(),
    "list all": lambda tx: tx.tickets(open_only=False),
    "list mine": lambda tx: tx.tickets(assignee="U1"),
    "list health": lambda tx: tx.tickets(department="health"),
    "list all health": lambda tx: tx.tickets(open_only=False, department="health"),
    "a thread's ticket (each reply)": lambda tx: (
        tx.ticket_of_thread("slack", "C1", "1.1"),
        tx.roots_unsettled("slack", "C1"),
    ),
}


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = migrated_store(db_url, FakeClock())
    with s.tx() as tx:  # a little of everything, so the planner has tables to read
        tx.create_tickets(
            [
                NewTicket(
                    tweet(10 + i, f"@SevaHelp oxygen {i}"),
                    DepartmentId("health"),
                    "slack",
                    ChannelId("C1"),
                    ChatUserId("U1"),
                )
                for i in range(5)
            ]
        )
    if s.engine.dialect.name == "sqlite":
        with s.engine.begin() as conn:
            _a_years_statistics(conn)
        s.engine.dispose()  # statistics are read when a connection loads the schema
    yield s
    s.dispose()


# Tables whose rows pass through a few states and then stay in the last one: a year on,
# nearly every row is in one state (delivered, sent, handled) and a few are in flight.
SETTLED = ("outbox", "replies", "reply_parts", "inbox", "retractions")
# Columns with a handful of values whatever the history (any other: every row its own).
FEW_VALUES = {
    "state": 2,
    "department": 10,
    "platform": 2,
    "channel": 10,
    "source": 2,
    "urgent": 2,
    "answered": 2,
    "is_root": 2,
    "in_thread": 2,
}


def _a_years_statistics(conn: Any) -> None:
    """What `ANALYZE` (or `PRAGMA optimize`) writes for a year and a half of history:
    a million rows a table, one `state` value in the settled tables, a few values in
    the columns that take few (`FEW_VALUES`), every row its own in the others.
    SQLite plans by these averages, and with them a query that only says `state IN
    ('pending', 'unknown')` scans a million delivered posts; without statistics (a
    database that was never analysed) it searches the index, so the plans are checked
    with them."""
    rows = 1_000_000
    conn.exec_driver_sql("ANALYZE")  # makes sqlite_stat1; then every index gets its line
    conn.exec_driver_sql("DELETE FROM sqlite_stat1")
    tables = conn.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).scalars()
    for table in list(tables):
        stats: list[tuple[str | None, str]] = [(None, str(rows))]
        for index in conn.exec_driver_sql(f"PRAGMA index_list('{table}')").all():
            columns = [c[2] for c in conn.exec_driver_sql(f"PRAGMA index_info('{index[1]}')")]
            averages, values = [], 1
            for c in columns:  # rows per distinct prefix of the index, as ANALYZE counts
                few = FEW_VALUES.get(c)
                values = values * (1 if c == "state" and table in SETTLED else (few or rows))
                averages.append(max(1, rows // values))
            stats.append((index[1], " ".join(str(n) for n in (rows, *averages))))
        for index, stat in stats:
            conn.exec_driver_sql(
                "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", (table, index, stat)
            )


@contextmanager
def recorded(store: Store) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if not many and sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")):
            statements.append((sql, params))

    event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(store.engine, "before_cursor_execute", record)


def full_scans(store: Store, statements: list[tuple[str, Any]]) -> list[str]:
    found = []
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "postgresql":
            conn.execute(text("SET enable_seqscan = off"))
        for sql, params in statements:
            if store.engine.dialect.name == "sqlite":
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params).all()
                plan = [str(r[-1]) for r in rows]
                # A SCAN of a subquery (anon_…) reads what its own LIMIT let through.
                bad = [p for p in plan if p.startswith("SCAN ") and not _bounded(p)]
            else:
                rows = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + sql, params).all()
                bad = _unbounded_pg(rows[0][0][0]["Plan"])
            if bad:
                found.append(f"{' '.join(sql.split())[:160]} -> {bad}")
    return found


def _bounded(step: str) -> bool:
    return "CONSTANT ROW" in step or step.startswith(("SCAN anon_", "SCAN (subquery"))


def _unbounded_pg(node: dict[str, Any]) -> list[str]:
    """Sequential scans, and index scans that read a whole index (no Index Cond)."""
    kind = node["Node Type"]
    bad = []
    if kind == "Seq Scan":
        bad.append(f"Seq Scan on {node.get('Relation Name')}")
    elif kind in ("Index Scan", "Index Only Scan", "Bitmap Index Scan") and (
        "Index Cond" not in node
    ):
        bad.append(f"{kind} of all of {node.get('Index Name')}")
    for child in node.get("Plans", []):
        bad += _unbounded_pg(child)
    return bad


@pytest.mark.parametrize("name", list(UNITS))
def test_each_recurring_query_reads_through_an_index(store: Store, name: str) -> None:
    with recorded(store) as statements, store.tx() as tx:
        UNITS[name](tx)
    assert statements, "the unit ran some statement"
    assert full_scans(store, statements) == []
