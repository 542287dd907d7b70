"""How the store's database threads and the inbox worker order work: what a tweet or an
ack waits on goes first, bookkeeping waits a moment but is never starved, and stored
events are handled in order within a thread and side by side across threads."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from adapters.db.store import _Threads
from adapters.inbox import Arrivals, InboxWorker
from adapters.slack.platform import _thread_of
from bot.batch import Batch
from bot.ports import InboxEvent
from tests.fakes import FakeClock


def _blocked(threads: _Threads) -> threading.Event:
    """Holds the only database thread until the returned event is set."""
    release = threading.Event()
    threads.submit(release.wait, first=False)
    return release


def test_units_run_first_go_before_the_ones_already_waiting():
    threads = _Threads(1, "test-db")
    ran: list[str] = []
    release = _blocked(threads)
    done = [threads.submit(lambda n=n: ran.append(n), first=False) for n in ("rest1", "rest2")]
    done += [threads.submit(lambda n=n: ran.append(n), first=True) for n in ("first1", "first2")]
    release.set()
    for future in done:
        future.result(5)
    threads.shutdown()
    assert ran == ["first1", "first2", "rest1", "rest2"]


def test_a_waiting_unit_goes_next_once_it_has_waited_its_patience():
    threads = _Threads(1, "test-db")
    ran: list[str] = []
    release = _blocked(threads)
    rest = threads.submit(lambda: ran.append("rest"), first=False)
    time.sleep(_Threads.PATIENCE + 0.05)  # first ones keep coming after this
    firsts = [threads.submit(lambda n=n: ran.append(n), first=True) for n in ("a", "b")]
    release.set()
    for future in [rest, *firsts]:
        future.result(5)
    threads.shutdown()
    assert ran == ["rest", "a", "b"]


def test_shutting_down_runs_what_is_queued_and_errors_reach_the_caller():
    threads = _Threads(2, "test-db")
    ran: list[int] = []
    futures = [threads.submit(lambda n=n: ran.append(n), first=n % 2 == 0) for n in range(10)]

    def broken() -> None:
        raise ValueError("a bug in a unit")

    failed = threads.submit(broken, first=True)
    threads.shutdown()
    assert all(f.done() for f in futures) and sorted(ran) == list(range(10))
    with pytest.raises(ValueError, match="a bug in a unit"):
        failed.result(0)
    with pytest.raises(RuntimeError):
        threads.submit(lambda: None, first=False)


async def test_store_run_first_overtakes_units_waiting_in_run(stores):
    store = stores()
    order: list[str] = []
    gate = threading.Event()

    def hold(tx) -> None:
        gate.wait(5)

    held = asyncio.ensure_future(store.run(hold))
    await asyncio.sleep(0.05)  # the one database thread (SQLite) is busy now
    later = asyncio.ensure_future(store.run(lambda tx: order.append("bookkeeping")))
    await asyncio.sleep(0.01)
    sooner = asyncio.ensure_future(store.run_first(lambda tx: order.append("tweet")))
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.gather(held, later, sooner)
    assert order == ["tweet", "bookkeeping"]


def _event(n: int, thread: str) -> tuple[str, str]:
    body = {
        "type": "event_callback",
        "event_id": f"Ev{n}",
        "event": {"type": "message", "channel": "C1", "ts": f"2.{n}", "thread_ts": thread},
    }
    return f"Ev{n}", json.dumps(body)


async def test_stored_events_run_in_order_per_thread_and_side_by_side_across_threads(stores):
    """Two threads' events: each thread's in the order stored, one at a time; the other
    thread's meanwhile (its first event starts before the first thread's ends)."""
    store = stores()
    for n, thread in enumerate(["1.0", "1.0", "1.1", "1.0", "1.1"]):
        assert await store.accept("slack", *_event(n, thread))
    log: list[tuple[str, str]] = []
    running: dict[str, int] = {}

    async def handle(event: InboxEvent) -> None:
        key = _thread_of(event)
        running[key] = running.get(key, 0) + 1
        assert running[key] == 1, "two events of one thread at once"
        log.append(("start", event.event_id))
        await asyncio.sleep(0.02)
        log.append(("end", event.event_id))
        running[key] -= 1

    worker = InboxWorker(store, "slack", handle, FakeClock(), order=_thread_of)
    assert await worker.drain() == 5
    starts = [e for what, e in log if what == "start"]
    assert [e for e in starts if e in ("Ev0", "Ev1", "Ev3")] == ["Ev0", "Ev1", "Ev3"]
    assert [e for e in starts if e in ("Ev2", "Ev4")] == ["Ev2", "Ev4"]
    assert log.index(("start", "Ev2")) < log.index(("end", "Ev0"))  # side by side
    assert await store.claim("slack", 10) == []  # every one marked done


async def test_events_stored_while_one_is_slow_are_claimed_and_handled_meanwhile(stores):
    """A slow event holds up only its own thread: events stored while it is handled
    are claimed at once, another thread's handled meanwhile, its own thread's after it."""
    store = stores()
    assert await store.accept("slack", *_event(0, "1.0"))
    release = asyncio.Event()
    started, other_done = asyncio.Event(), asyncio.Event()
    log: list[str] = []

    async def handle(event: InboxEvent) -> None:
        log.append("start " + event.event_id)
        if event.event_id == "Ev0":
            started.set()
            await release.wait()
        log.append("end " + event.event_id)
        if event.event_id == "Ev1":
            other_done.set()

    worker = InboxWorker(store, "slack", handle, FakeClock(), order=_thread_of)
    draining = asyncio.ensure_future(worker.drain())
    await asyncio.wait_for(started.wait(), 5)
    assert await store.accept("slack", *_event(1, "1.1"))  # another thread
    assert await store.accept("slack", *_event(2, "1.0"))  # the slow one's thread
    worker.wake()
    await asyncio.wait_for(other_done.wait(), 5)
    assert "start Ev2" not in log  # Ev0 is still being handled
    release.set()
    assert await draining == 3
    assert log.index("start Ev2") > log.index("end Ev0")
    assert await store.claim("slack", 10) == []  # every one marked done


async def test_handling_waits_while_events_are_being_acknowledged(stores):
    """Acks go first: a stored event is handled once no request is being answered (or
    after a quarter of a second), and at once when none is."""
    store = stores()
    assert await store.accept("slack", *_event(0, "1.0"))
    arrivals = Arrivals()
    handled = asyncio.Event()

    async def handle(event: InboxEvent) -> None:
        handled.set()

    worker = InboxWorker(store, "slack", handle, FakeClock(), arrivals=arrivals)
    with arrivals:  # an ack under way
        draining = asyncio.ensure_future(worker.drain())
        await asyncio.sleep(0.1)
        assert not handled.is_set()
    await asyncio.wait_for(handled.wait(), 0.1)  # woken once the last ack is answered
    assert await draining == 1


async def test_without_an_order_key_events_run_one_at_a_time_oldest_first(stores):
    store = stores()
    for n, thread in enumerate(["1.0", "1.1", "1.2"]):
        await store.accept("matrix", *_event(n, thread))
    log: list[str] = []

    async def handle(event: InboxEvent) -> None:
        log.append("start " + event.event_id)
        await asyncio.sleep(0.01)
        log.append("end " + event.event_id)

    assert await InboxWorker(store, "matrix", handle, FakeClock()).drain() == 3
    assert log == [f"{w} Ev{n}" for n in range(3) for w in ("start", "end")]


def test_the_order_key_is_the_thread_of_a_message_its_edit_and_a_button():
    def key(body: object) -> str:
        return _thread_of(InboxEvent(1, "slack", "Ev1", json.dumps(body), 1, "t"))

    reply = {"event": {"type": "message", "channel": "C1", "ts": "5.0", "thread_ts": "1.0"}}
    top = {"event": {"type": "message", "channel": "C1", "ts": "1.0"}}
    edit = {
        "event": {
            "type": "message",
            "subtype": "message_changed",
            "channel": "C1",
            "ts": "9.0",
            "message": {"ts": "5.0", "thread_ts": "1.0"},
        }
    }
    gone = {
        "event": {
            "type": "message",
            "subtype": "message_deleted",
            "channel": "C1",
            "ts": "9.1",
            "previous_message": {"ts": "1.0"},
        }
    }
    press = {
        "type": "block_actions",
        "channel": {"id": "C1"},
        "container": {"message_ts": "7.0", "thread_ts": "1.0"},
    }
    assert key(reply) == key(top) == key(edit) == key(gone) == key(press) == "C1:1.0"
    assert (
        key({"event": {"type": "message", "channel": "C2", "ts": "5.0", "thread_ts": "1.0"}})
        == "C2:1.0"
    )
    assert _thread_of(InboxEvent(1, "slack", "Ev1", "not json", 1, "t")) == ""


async def test_items_added_during_a_write_share_the_next_one_and_get_their_answers():
    writes: list[list[int]] = []
    first_write = asyncio.Event()

    async def write(items: list[int]) -> list[int]:
        writes.append(items)
        if len(writes) == 1:
            await first_write.wait()
        return [n * 10 for n in items]

    batch: Batch[int, int] = Batch()
    one = asyncio.ensure_future(batch.add(1, write))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(batch.add(n, write)) for n in (2, 3, 4)]
    await asyncio.sleep(0.01)
    assert not one.done()  # its write is still under way
    first_write.set()
    assert await asyncio.gather(one, *rest) == [10, 20, 30, 40]
    assert writes == [[1], [2, 3, 4]]


async def test_a_failed_write_fails_each_of_its_items_and_the_next_ones_go_on():
    async def write(items: list[str]) -> list[str]:
        if "bad" in items:
            raise RuntimeError("database down")
        return items

    batch: Batch[str, str] = Batch()
    with pytest.raises(RuntimeError, match="database down"):
        await batch.add("bad", write)
    assert await batch.add("good", write) == "good"  # a later write is a write of its own


async def test_with_several_writers_writes_run_side_by_side_and_each_item_once():
    running, most_at_once = 0, 0
    writes: list[list[int]] = []

    async def write(items: list[int]) -> list[int]:
        nonlocal running, most_at_once
        running += 1
        most_at_once = max(most_at_once, running)
        writes.append(items)
        await asyncio.sleep(0.01)
        running -= 1
        return [n * 10 for n in items]

    batch: Batch[int, int] = Batch(most=3, writers=2)
    got = await asyncio.gather(*(batch.add(n, write) for n in range(10)))
    assert got == [n * 10 for n in range(10)]
    assert most_at_once == 2  # never more than `writers`
    assert sorted(n for items in writes for n in items) == list(range(10))
    assert all(len(items) <= 3 for items in writes)


async def test_an_answer_that_is_an_error_is_raised_for_its_own_item_only():
    """A write that fell back to one item at a time answers an item's error as its
    answer: that item raises it, the others get theirs."""

    async def write(items: list[int]) -> list[int | Exception]:
        return [ValueError(f"bad {n}") if n == 2 else n * 10 for n in items]

    batch: Batch[int, int] = Batch()
    adds = [asyncio.ensure_future(batch.add(n, write)) for n in range(4)]
    await asyncio.wait(adds)
    assert [adds[n].result() for n in (0, 1, 3)] == [0, 10, 30]
    with pytest.raises(ValueError, match="bad 2"):
        adds[2].result()


async def test_a_write_takes_at_most_its_share_and_the_rest_wait_for_the_next():
    writes: list[list[int]] = []

    async def write(items: list[int]) -> list[int]:
        writes.append(items)
        await asyncio.sleep(0)
        return items

    batch: Batch[int, int] = Batch(most=2)
    assert await asyncio.gather(*(batch.add(n, write) for n in range(5))) == list(range(5))
    assert writes == [[0, 1], [2, 3], [4]]  # all five were waiting when the first began
