"""The ticket store on SQLite and PostgreSQL: the constraints the guarantees rest on."""

from __future__ import annotations

from datetime import timedelta

import pytest

from adapters.db.store import Store
from adapters.db.tables import TicketTweetRow
from adapters.metrics import PrometheusMetrics
from bot.config import parse_config
from bot.domain import (
    ChannelId,
    ChatUserId,
    DepartmentId,
    MessageId,
    Outgoing,
    Rich,
    TicketState,
    TweetId,
)
from bot.outbox import ReplyState, root_key
from bot.ports import Conflict, NewTicket
from entrypoints import migrate
from handlers import delivery, ingest
from handlers.context import Bridge
from tests.conftest import migrated_store
from tests.fakes import FakeChat, FakeClock, FakeX, tweet
from tests.unit.conftest import CONFIG


@pytest.fixture
def store(db_url):
    s = migrated_store(db_url, FakeClock())
    yield s
    s.dispose()


def new_ticket(store: Store, tid: int = 10):
    with store.tx() as tx:
        (ticket,) = tx.create_tickets(
            [
                NewTicket(
                    tweet(tid, "@SevaHelp help"),
                    DepartmentId("health"),
                    "slack",
                    ChannelId("C1"),
                    ChatUserId("U1"),
                )
            ]
        )
        return ticket


def test_tickets_opened_together_are_numbered_in_the_order_given(store):
    """A poll's tickets: one write, numbered in the order of the mentions handed in
    (whatever their ids sort as), each ticket the one of its own tweet."""
    ids = [907, 12, 455, 3, 78, 1000, 41, 600]
    with store.tx() as tx:
        opened = tx.create_tickets(
            [
                NewTicket(
                    tweet(i, f"@SevaHelp help {i}"),
                    DepartmentId("health"),
                    "slack",
                    ChannelId("C1"),
                    None,
                )
                for i in ids
            ]
        )
    assert [t.tweet_id for t in opened] == [str(i) for i in ids]
    numbers = [t.number for t in opened]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(ids)
    with store.tx() as tx:
        assert all(tx.ticket(t.number).text == f"@SevaHelp help {t.tweet_id}" for t in opened)


def test_migrations_reach_head_and_report_it(db_url):
    s = Store(db_url)
    assert migrate.current(s.engine) is None
    assert not migrate.is_current(s.engine)
    migrate.upgrade(s.engine)
    assert migrate.is_current(s.engine)
    migrate.upgrade(s.engine)  # idempotent
    s.dispose()


def test_one_ticket_per_tweet_is_a_database_constraint(store):
    t = new_ticket(store)
    assert t.number == 1
    with pytest.raises(Conflict), store.tx() as tx:
        tx.s.add(TicketTweetRow(tweet_id="10", ticket=1, kind="query", created_at=tx.now))
    with pytest.raises(Conflict):
        new_ticket(store)
    with store.tx() as tx:
        assert [x.number for x in tx.tickets(open_only=False)] == [1]


def test_one_public_reply_per_chat_message(store):
    t = new_ticket(store)
    with store.tx() as tx:
        first = tx.add_reply(t, "slack", "C1", "1.1", ChatUserId("U1"), "hi", ["hi"], False)
        again = tx.add_reply(t, "slack", "C1", "1.1", ChatUserId("U1"), "hi", ["hi"], False)
    assert first is not None and again is None
    with store.tx() as tx:
        assert len(tx.due_parts()) == 1


def test_claims_are_compare_and_set(store):
    t = new_ticket(store)
    with store.tx() as tx:
        root = Outgoing(root_key(1), t.channel, Rich.of("x"), ticket=1, is_root=True)
        assert tx.enqueue(root, "slack", False)
        assert not tx.enqueue(root, "slack", False)
    with store.tx() as tx:
        (post,) = tx.due_posts()
    with store.tx() as tx:
        _, mine = tx.settle_and_claim(None, post)
    assert mine is not None
    with store.tx() as tx:
        assert tx.settle_and_claim(None, post) == (False, None)  # a second instance loses
        assert tx.due_posts() == []
    # Once the claim expired and another instance took over, the first one's late
    # answer changes nothing.
    with store.tx() as tx:
        assert tx.expire_claims(timedelta(0)) == 1
    with store.tx() as tx:
        _, theirs = tx.settle_and_claim(None, tx.due_posts()[0])
    assert theirs is not None
    with store.tx() as tx:
        assert not tx.post_done(mine, MessageId("1.1"))
    with store.tx() as tx:
        assert tx.post_done(theirs, MessageId("2.2"))
    with store.tx() as tx:
        assert tx.ticket(1).root == "2.2"  # type: ignore[union-attr]


async def test_replay_guard_and_key_value(store):
    assert await store.first_sight("slack", "Ev1")
    assert not await store.first_sight("slack", "Ev1")
    assert await store.first_sight("matrix", "Ev1")
    assert await store.was_seen("slack", "Ev1")
    assert not await store.was_seen("slack", "Ev2")
    assert await store.get("k") is None
    await store.put("k", "v1")
    await store.put("k", "v2")
    assert await store.get("k") == "v2"


async def test_a_replayed_event_in_a_unit_of_work_keeps_the_rest_of_it(store):
    """A replay guard is no conflict: whatever else the unit of work did still commits."""

    def guard_and_put(tx, value: str) -> bool:
        tx.put("k", value)
        return tx.first_sight("slack", "Ev1")

    assert await store.run(guard_and_put, "1")
    assert not await store.run(guard_and_put, "2")
    assert await store.get("k") == "2"


async def test_ingest_and_reply_flow_on_this_database(db_url):
    clock = FakeClock()
    store = migrated_store(db_url, clock)
    x, chat = FakeX(clock=clock), FakeChat(clock=clock)
    b = Bridge(
        parse_config(CONFIG, "t"), store, x, x, {"slack": chat}, PrometheusMetrics(), clock=clock
    )
    x.mentions_queue = [tweet(i, f"@SevaHelp oxygen {i}") for i in range(100, 250)]
    assert await ingest.poll(b) == 150
    assert await ingest.poll(b) == 0
    await delivery.deliver(b)
    assert len(chat.posts) == 150
    ticket = await store.run(lambda tx: tx.ticket(150))
    assert ticket is not None and ticket.root is not None
    store.dispose()


def test_a_lease_has_one_holder_until_it_expires(db_url):
    clock = FakeClock()
    store = migrated_store(db_url, clock)
    ttl = timedelta(seconds=30)

    def hold(owner: str) -> bool:
        with store.tx() as tx:
            return tx.hold_lease("x.poll", owner, ttl)

    assert hold("a")
    assert not hold("b")
    assert hold("a")  # renewed
    clock.advance(seconds=31)
    assert hold("b")  # a stopped renewing: b takes over
    assert not hold("a")
    store.dispose()


def test_a_released_lease_is_free_at_once(store):
    ttl = timedelta(minutes=5)
    with store.tx() as tx:
        assert tx.hold_lease("x.poll", "a", ttl)
    with store.tx() as tx:
        tx.release_lease("x.poll", "b")  # not b's to release
    with store.tx() as tx:
        assert not tx.hold_lease("x.poll", "b", ttl)
    with store.tx() as tx:
        tx.release_lease("x.poll", "a")
    with store.tx() as tx:
        assert tx.hold_lease("x.poll", "b", ttl)


def test_a_late_refusal_from_an_expired_claim_changes_nothing(store):
    t = new_ticket(store)
    with store.tx() as tx:
        tx.add_reply(t, "slack", "C1", "1.1", ChatUserId("U1"), "hi", ["hi"], False)
    with store.tx() as tx:
        mine = tx.claim_part(tx.due_parts()[0])
    assert mine is not None
    with store.tx() as tx:
        assert tx.expire_claims(timedelta(0)) == 1
    with store.tx() as tx:
        theirs = tx.claim_part(tx.due_parts()[0])
    assert theirs is not None
    with store.tx() as tx:
        assert tx.part_sent(theirs, TweetId("777"))
        tx.finish_reply(theirs.reply, ReplyState.SENT)  # as the delivery handler does
    with store.tx() as tx:
        assert not tx.part_refused(mine, "duplicate content")
        info = tx.reply(1)
        assert info is not None and info.state == "sent" and info.tweet_ids == ("777",)


def test_posts_queued_before_is_root_existed_keep_opening_their_thread(db_url):
    """Migration 0002: a root queued by an older version still sets its ticket's thread."""
    from sqlalchemy import text

    from adapters.db.store import make_engine

    engine = make_engine(db_url)
    migrate.upgrade(engine, "0001")
    with engine.begin() as conn:
        for key in ("root:1", "followup:5"):
            conn.execute(
                text(
                    "INSERT INTO outbox (key, platform, channel, in_thread, body, actions, "
                    "state, attempts, created_at) VALUES (:key, 'slack', 'C1', false, '[]', "
                    "'[]', 'pending', 0, '2021-05-04 10:00:00')"
                ),
                {"key": key},
            )
    migrate.upgrade(engine)
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT key, is_root FROM outbox")).all())
    engine.dispose()
    assert {k: bool(v) for k, v in rows.items()} == {"root:1": True, "followup:5": False}


async def test_a_unit_of_work_runs_off_the_event_loop_and_commits_whole(store):
    """`run` is how async code uses the database: on the store's threads, one transaction."""
    import threading

    loop_thread = threading.get_ident()

    def put_two(tx, value: str) -> int:
        tx.put("a", value)
        tx.put("b", value)
        return threading.get_ident()

    assert await store.run(put_two, "1") != loop_thread
    assert (await store.get("a"), await store.get("b")) == ("1", "1")

    def put_then_fail(tx) -> None:
        tx.put("a", "2")
        raise RuntimeError("half-way")

    with pytest.raises(RuntimeError):
        await store.run(put_then_fail)
    assert await store.get("a") == "1"  # rolled back whole

    def same_tweet_twice(tx) -> None:
        new = NewTicket(
            tweet(77, "@SevaHelp twice"),
            DepartmentId("health"),
            "slack",
            ChannelId("C1"),
            ChatUserId("U1"),
        )
        tx.create_tickets([new, new])

    with pytest.raises(Conflict):
        await store.run(same_tweet_twice)


async def test_synchronous_use_on_the_event_loop_fails_loudly(store):
    """A forgotten `with store.tx()` in async code would stall every event, ack and
    health check while it waits: it is refused at once instead."""
    from adapters.db.store import OnEventLoop

    with pytest.raises(OnEventLoop), store.tx():
        pass
    assert await store.run(lambda tx: tx.get("k")) is None  # the way that works


def test_a_move_pins_the_old_thread_and_only_the_new_root_opens_the_next(store):
    """`move` on both databases: the old thread keeps what was queued for it and still
    finds its ticket; the ticket's thread changes only when the root of its latest move
    lands, and a superseded root never takes over."""
    t = new_ticket(store)
    root = Outgoing(root_key(1), ChannelId("C1"), Rich.of("root"), ticket=1, is_root=True)
    note = Outgoing("note:1", ChannelId("C1"), Rich.of("queued before the move"), ticket=1)
    with store.tx() as tx:
        tx.enqueue(root, "slack", False)
        (post,) = tx.due_posts()
        _, claimed = tx.settle_and_claim(None, post)
        assert claimed is not None
        tx.settle_and_claim((claimed, MessageId("100.1")), None)
        tx.enqueue(note, "slack", True)
    with store.tx() as tx:
        first = tx.move_ticket(1, t.moves, "transport", "slack", "C2", "U1")
        assert tx.move_ticket(1, t.moves, "water", "slack", "C3", "U1") is None  # stale
    assert first is not None and first.n == 1 and first.left is not None
    assert first.left.root == "100.1"
    with store.tx() as tx:
        second = tx.move_ticket(1, 1, "police", "matrix", "!r:hs", "U2")  # before it landed
        assert second is not None and second.left is None
        moved = tx.ticket(1)
        assert moved is not None and (moved.channel, moved.root, moved.moves) == ("!r:hs", None, 2)
        due = {p.outgoing.key: p.outgoing.thread_root for p in tx.due_posts()}
        assert due == {"note:1": "100.1"}
        for n, channel in ((1, "C2"), (2, "!r:hs")):
            out = Outgoing(f"moved:1:{n}", ChannelId(channel), Rich.of("m"), ticket=1, is_root=True)
            tx.enqueue(out, "slack", False)
    with store.tx() as tx:
        late, latest = sorted(
            (p for p in tx.due_posts() if p.outgoing.key.startswith("moved:")),
            key=lambda p: p.outgoing.key,
        )
        _, late_claim = tx.settle_and_claim(None, late)
        _, latest_claim = tx.settle_and_claim(None, latest)
        assert late_claim is not None and latest_claim is not None
        tx.settle_and_claim((late_claim, MessageId("200.1")), None)  # superseded: no thread
        assert tx.ticket(1).root is None  # type: ignore[union-attr]
        tx.settle_and_claim((latest_claim, MessageId("$ev")), None)
        assert tx.ticket(1).root == "$ev"  # type: ignore[union-attr]
    with store.tx() as tx:
        for channel, mid in (("C1", "100.1"), ("C2", "200.1")):
            left = tx.moved_from("slack", channel, mid)
            assert left is not None and left.ticket.number == 1
        assert tx.moved_from("slack", "C1", "999.9") is None
        assert tx.ticket_of_thread("matrix", "!r:hs", "$ev") is not None


# --- on call and oversight (issue 11): the same answers on both databases


def test_overrides_are_kept_cleared_and_read_by_department(store):
    clock = store._clock
    with store.tx() as tx:
        a = tx.add_override("health", ChatUserId("UA"), tx.now, tx.now + timedelta(hours=2), "UL")
        tx.add_override("transport", ChatUserId("UB"), tx.now, tx.now + timedelta(hours=2), "UL")
    clock.advance(hours=1)
    with store.tx() as tx:
        (found,) = tx.overrides("health", tx.now - timedelta(days=7))
        assert found == a
        (cleared,) = tx.clear_overrides("health", ChatUserId("UL"))
        assert cleared.ends == tx.now  # the past stays as it was: only the end moves
        assert tx.clear_overrides("health", ChatUserId("UL")) == []
    clock.advance(minutes=1)
    with store.tx() as tx:
        assert tx.overrides("health", tx.now) == []  # ended
        assert [o.member for o in tx.overrides("transport", tx.now)] == ["UB"]


def test_figures_count_one_departments_window(store):
    clock = store._clock
    for tid in (10, 11, 12):
        new_ticket(store, tid)
    clock.advance(minutes=10)
    with store.tx() as tx:
        assert tx.first_response(1) and not tx.first_response(1)  # once
        tx.set_state(1, TicketState.CLOSED)
    clock.advance(minutes=50)
    with store.tx() as tx:
        tx.first_response(2)
        since = tx.now - timedelta(days=1)
        assert tx.ticket_counts("health", since, tx.now) == (3, 2, 1)
        assert sorted(tx.first_responses("health", since, tx.now)) == [660.0, 3660.0]
        assert tx.ticket_counts("transport", since, tx.now) == (0, 0, 0)
        count, oldest = tx.open_summary("health")
        assert count == 2 and oldest is not None and oldest.number == 2
        assert [t.number for t in tx.oldest_open("health", 5)] == [2, 3]
        assert tx.waiting_since("health", tx.now - timedelta(minutes=30)) == 1  # #3
        assert tx.open_by_department() == {"health": 2}


def test_the_second_escalation_step_is_marked_once(store):
    new_ticket(store)
    with store.tx() as tx:
        tx.set_root(1, MessageId("1.0"), root_key(1))
        assert tx.escalated_again_due("health", tx.now) == []  # the first step comes first
        assert tx.mark_escalated(1)
        (due,) = tx.escalated_again_due("health", tx.now)
        assert due.number == 1
        assert tx.mark_escalated_again(1) and not tx.mark_escalated_again(1)
        assert tx.escalated_again_due("health", tx.now) == []


async def test_the_inbox_stores_each_event_once_and_hands_it_out_oldest_first(store):
    """What an ack promises: stored once (a redelivery is known), handed out in order,
    and put back after a hiccup; a claim left by a dead process is handed out again."""
    import asyncio

    fresh = await asyncio.gather(
        *(store.accept("slack", f"Ev{i}", f'{{"n": {i}}}') for i in range(50)),
        store.accept("slack", "Ev3", "again"),  # Slack's retry, in the same burst
    )
    assert fresh == [True] * 50 + [False]
    assert not await store.accept("slack", "Ev7", "later retry")
    assert await store.accept("matrix", "Ev7", "another platform's id space")

    first = await store.claim("slack", 20)
    assert [e.event_id for e in first] == [f"Ev{i}" for i in range(20)]
    assert first[3].payload == '{"n": 3}'  # the first delivery's payload, not the retry's
    second = await store.claim("slack", 100)
    assert [e.event_id for e in second] == [f"Ev{i}" for i in range(20, 50)]
    assert await store.claim("slack", 100) == []  # all claimed

    await store.done(first)
    await store.retry(second[0], store.now(), "database hiccup")
    again = await store.claim("slack", 100)
    assert [e.event_id for e in again] == ["Ev20"] and again[0].attempts == 2

    await store.run(lambda tx: tx.expire_claims(timedelta(0)))  # the process died
    back = await store.claim("slack", 100)
    assert [e.event_id for e in back] == ["Ev20"] + [f"Ev{i}" for i in range(21, 50)]


async def test_events_and_a_sync_token_are_stored_in_one_commit(store):
    await store.accept_all("matrix", [("$a", "{}"), ("$b", "{}")], then_put=("sync", "t2"))
    assert await store.get("sync") == "t2"
    assert [e.event_id for e in await store.claim("matrix", 10)] == ["$a", "$b"]

    def half(tx) -> None:
        tx.accept_events("matrix", [("$c", "{}")])
        raise RuntimeError("crash before the token")

    with pytest.raises(RuntimeError):
        await store.run(half)
    assert await store.claim("matrix", 10) == []  # nothing without its token


def test_an_upgrade_keeps_replies_and_their_parts(db_url):
    """A batch migration copies a table on SQLite: with replies and their parts stored,
    the upgrade must neither fail on the foreign key nor lose a row."""
    from sqlalchemy import text

    from adapters.db.store import make_engine

    engine = make_engine(db_url)
    migrate.upgrade(engine, "0010")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO tickets (tweet_id, department, state, author_id, author_username, "
                "text, created_at, platform, channel, reply_to, urgent, moves) VALUES "
                "('1', 'health', 'open', '2', 'u', 't', '2021-05-04 10:00:00', 'slack', 'C1', "
                "'1', false, 0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO replies (ticket, platform, channel, message_id, author, text, "
                "in_reply_to, state, created_at) VALUES (1, 'slack', 'C1', '1.1', 'U1', 'hi', "
                "'1', 'sent', '2021-05-04 10:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO reply_parts (reply, idx, text, state, attempts) "
                "VALUES (1, 0, 'hi', 'sent', 1)"
            )
        )
    migrate.upgrade(engine)
    assert migrate.is_current(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM reply_parts")).scalar() == 1
        assert conn.execute(text("SELECT text FROM replies")).scalar() == "hi"
    engine.dispose()
