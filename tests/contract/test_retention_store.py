"""The retention purge and retractions in the store, on SQLite and PostgreSQL: the purge
reads through its index (it must not grow with the tickets purged already) and takes
at most a batch."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from adapters.db.store import Store
from bot.domain import ChannelId, TicketState
from bot.ports import NewTicket
from tests.conftest import migrated_store
from tests.fakes import FakeClock, tweet


def closed_tickets(store: Store, n: int) -> None:
    with store.tx() as tx:
        made = tx.create_tickets(
            [
                NewTicket(tweet(100 + i, f"question {i}"), "health", "slack", ChannelId("C1"), None)
                for i in range(n)
            ]
        )
        for t in made:
            tx.set_state(t.number, TicketState.CLOSED)


def test_the_purge_takes_a_bounded_batch_through_its_index(db_url):
    clock = FakeClock()
    store = migrated_store(db_url, clock)
    try:
        closed_tickets(store, 7)
        clock.advance(days=40)
        cutoff = clock.now() - timedelta(days=30)
        with store.tx() as tx:
            first = tx.purge_due(cutoff, 5)
            tx.purge_tickets(first)
        with store.tx() as tx:
            rest = tx.purge_due(cutoff, 5)
            tx.purge_tickets(rest)
        with store.tx() as tx:
            assert tx.purge_due(cutoff, 5) == []
            assert len(first) == 5 and len(rest) == 2
            assert {n for n, _ in first} | {n for n, _ in rest} == set(range(1, 8))
            assert tx.ticket(7).text == ""  # type: ignore[union-attr]
    finally:
        store.dispose()


def test_one_retraction_per_reply(db_url):
    store = migrated_store(db_url, FakeClock())
    try:
        closed_tickets(store, 1)
        with store.tx() as tx:
            ticket = tx.ticket(1)
            assert ticket is not None
            reply = tx.add_reply(ticket, "slack", "C1", "m1", "U1", "Yes.", ["Yes."], False)
            assert reply is not None
            assert tx.add_retraction(reply, 1, "U1") is not None
            assert tx.add_retraction(reply, 1, "U2") is None
            assert [r.reply for r in tx.due_retractions()] == [reply]
    finally:
        store.dispose()


def test_the_purge_reads_through_its_index_however_many_were_purged(db_url):
    """With many tickets purged already, the daily look for more must not read them."""
    clock = FakeClock()
    store = migrated_store(db_url, clock)
    try:
        closed_tickets(store, 2000)
        with store.tx() as tx:
            tx.s.execute(text("UPDATE tickets SET purged_at = closed_at WHERE number <= 1950"))
            tx.s.execute(text("UPDATE tickets SET state = 'open' WHERE number > 1990"))
        query = (
            "SELECT number, author_username FROM tickets WHERE state = 'closed' "
            "AND purged_at IS NULL AND closed_at < :cutoff ORDER BY closed_at LIMIT 500"
        )
        params = {"cutoff": (clock.now() + timedelta(days=1)).replace(tzinfo=None)}
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
            if store.engine.dialect.name == "postgresql":
                plan = " ".join(r[0] for r in conn.execute(text("EXPLAIN " + query), params))
            else:
                rows = conn.execute(text("EXPLAIN QUERY PLAN " + query), params)
                plan = " ".join(str(r[-1]) for r in rows)
        assert "ix_tickets_retention" in plan, plan
    finally:
        store.dispose()
