"""The ticket store (`bot.ports.TicketStore`) on SQLAlchemy 2: units of work run as
plain functions on the store's own threads, so the event loop never waits on the
database and nothing can be awaited inside a transaction.

Why threads and not SQLAlchemy's asyncio extension: a transaction as a plain
synchronous function makes "no network call inside an open transaction" a fact of
the language rather than a rule to remember, and the measured cost of the hop is
small (bench/pipeline.py prints it).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.orm import sessionmaker

from adapters.db.uow import Tx
from bot.batch import Batch
from bot.domain import Platform
from bot.ports import Conflict, InboxEvent, StoreUnavailable

log = logging.getLogger("seva." + __name__)

P = ParamSpec("P")
T = TypeVar("T")

# Threads that run units of work for the event loop. SQLite has one writer at a time
# whatever we do, so one thread there hands the lock over without SQLite's sleep-and-
# retry busy wait; PostgreSQL gets a few, so one slow query never queues the rest.
SQLITE_THREADS = 1
SERVER_THREADS = 4
# Connections beyond the threads' own: synchronous users outside the event loop (the
# CLI, migrations, tests) never take one the threads need.
SPARE_CONNECTIONS = 2
GROUP_COMMIT = 200  # events stored in one commit at most
PROBE_KEY = "store.probe"  # written now and then while a write has failed


class OnEventLoop(RuntimeError):
    """Synchronous database use from the event loop's thread: it would stall every
    event, ack and health check while it waits. Use `await store.run(fn, ...)`."""


class Store:
    """The database: short transactions, one per unit of work."""

    def __init__(
        self, url: str, *, clock: Any = None, echo: bool = False, threads: int | None = None
    ) -> None:
        self.url = url
        sqlite = url.startswith("sqlite")
        self.threads = threads or (SQLITE_THREADS if sqlite else SERVER_THREADS)
        self.engine = make_engine(
            url, echo=echo, pool_size=self.threads + SPARE_CONNECTIONS, own_checkpoints=True
        )
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._clock = clock
        self._executor: _Threads | None = None
        self._checkpoints: _Checkpoints | None = None
        self._lock = threading.Lock()
        self._local = threading.local()  # per database thread: did this unit write?
        self._failing: tuple[str, datetime] | None = None  # why, since when
        self._accepting: Batch[tuple[str, str, str], bool] = Batch(most=GROUP_COMMIT)
        self._lanes: set[tuple[Platform, str]] = set()

        @event.listens_for(self.engine, "before_cursor_execute")
        def _note_writes(
            conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: bool
        ) -> None:
            if context is not None and (context.isinsert or context.isupdate or context.isdelete):
                self._local.wrote = True

    # --- units of work

    async def run(
        self, fn: Callable[Concatenate[Tx, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(tx, *args)` in one transaction on the store's threads (`TicketStore.run`).

        Raises Conflict (rolled back whole) when a uniqueness constraint said no.
        """
        work = functools.partial(self._run, fn, *args, **kwargs)
        return await asyncio.wrap_future(self._pool().submit(work, first=False))

    async def run_first(
        self, fn: Callable[Concatenate[Tx, P], T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`run`, ahead of the units waiting in `run` (`TicketStore.run_first`)."""
        work = functools.partial(self._run, fn, *args, **kwargs)
        return await asyncio.wrap_future(self._pool().submit(work, first=True))

    def _pool(self) -> _Threads:
        with self._lock:
            if self._executor is None:
                self._executor = _Threads(self.threads, "seva-db")
                path = self.engine.url.database
                if self.engine.dialect.name == "sqlite" and path and path != ":memory:":
                    self._checkpoints = _Checkpoints(path)
            return self._executor

    def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self._local.wrote = False
        with self._tx() as tx:
            result = fn(tx, *args, **kwargs)
        if self._local.wrote:
            self._writable()
        if tx.lanes:
            with self._lock:
                self._lanes |= tx.lanes
        return result

    def queued_lanes(self) -> set[tuple[Platform, str]]:
        """The channels that got chat posts queued since the last call (committed)."""
        with self._lock:
            lanes, self._lanes = self._lanes, set()
        return lanes

    def now(self) -> datetime:
        return self._clock.now() if self._clock is not None else datetime.now(UTC)

    def tx(self) -> AbstractContextManager[Tx]:
        """A transaction for synchronous code (the CLI, tools, tests): refused on a
        thread that runs an event loop, where `run` is the way."""
        if _on_event_loop():
            raise OnEventLoop(
                "synchronous database use on the event loop's thread; "
                "use `await store.run(fn, ...)`"
            )
        return self._tx()

    @contextmanager
    def _tx(self) -> Iterator[Tx]:
        try:
            with self._sessions() as s, s.begin():
                yield Tx(s, self.now())
        except IntegrityError as e:
            raise Conflict(str(e.orig)) from e
        except (DBAPIError, SQLAlchemyTimeoutError) as e:
            # Locked, refused, unreachable, out of space: the unit may be tried again.
            why = _why(e)
            self._unwritable(why)
            raise StoreUnavailable(f"database: {why}") from e

    # --- whether it can be written, for /healthz

    def health(self) -> dict[str, object]:
        """`ok`, or `down` with why and since when: a write failed and none has
        succeeded since (a read alone proves nothing about writes)."""
        failing = self._failing
        if failing is None:
            return {"ok": True, "state": "ok", "why": None, "since": None}
        why, since = failing
        return {"ok": False, "state": "down", "why": why, "since": since.isoformat()}

    @property
    def writable(self) -> bool:
        return self._failing is None

    async def probe(self) -> bool:
        """One small write, to learn whether the database can be written again."""
        stamp = self.now().isoformat()
        try:
            await self.run(lambda tx: tx.put(PROBE_KEY, stamp))
        except StoreUnavailable:
            return False
        return True

    def _unwritable(self, why: str) -> None:
        with self._lock:
            if self._failing is None:
                self._failing = (why, self.now())
                log.error("store.down why=%s", why)
            else:
                self._failing = (why, self._failing[1])

    def _writable(self) -> None:
        with self._lock:
            if self._failing is not None:
                log.warning("store.up was_down_since=%s", self._failing[1].isoformat())
                self._failing = None

    def dispose(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown()
        if self._checkpoints is not None:
            self._checkpoints.stop()
        self.engine.dispose()

    # --- the Inbox port, for adapters (events stored before they are acknowledged)

    async def accept(self, source: str, event_id: str, payload: str) -> bool:
        """Stores one event. Events arriving together share one commit (a group
        commit): a burst of 500 costs a few commits, and each ack waits for one."""
        return await self._accepting.add((source, event_id, payload), self._accept_group)

    async def _accept_group(self, batch: list[tuple[str, str, str]]) -> list[bool]:
        # An ack waits for this: ahead of other units.
        return await self.run_first(_accept_grouped, batch)

    async def accept_all(
        self,
        source: str,
        events: Sequence[tuple[str, str]],
        then_put: tuple[str, str] | None = None,
    ) -> None:
        def store(tx: Tx) -> None:
            tx.accept_events(source, list(events))
            if then_put is not None:
                tx.put(*then_put)

        await self.run(store)

    async def claim(self, source: str, limit: int) -> list[InboxEvent]:
        return await self.run_first(lambda tx: tx.claim_events(source, limit))

    async def done(self, events: Sequence[InboxEvent]) -> None:
        if events:
            await self.run(lambda tx: tx.events_done(events))

    async def retry(
        self, event: InboxEvent, not_before: datetime, error: str, *, give_up: bool = False
    ) -> None:
        await self.run(lambda tx: tx.event_retry(event, not_before, error, give_up=give_up))

    # --- the KeyValue port, for adapters (sync tokens, device ids, replay guards)

    async def get(self, key: str) -> str | None:
        return await self.run(lambda tx: tx.get(key))

    async def put(self, key: str, value: str) -> None:
        await self.run(lambda tx: tx.put(key, value))

    async def was_seen(self, scope: str, event_id: str) -> bool:
        return await self.run(lambda tx: tx.was_seen(scope, event_id))

    async def first_sight(self, scope: str, event_id: str) -> bool:
        return await self.run(lambda tx: tx.first_sight(scope, event_id))


class _Threads:
    """The store's database threads, with two queues: units run with `first` (what an
    ack or a reply tweet waits for) go before the rest, and the rest go in order. A unit
    of the rest waits `PATIENCE` seconds at most while first ones keep coming: then it
    goes next, so bookkeeping is delayed by a burst but never starved by it."""

    PATIENCE = 0.25

    def __init__(self, n: int, name: str) -> None:
        self._ready = threading.Condition()
        self._first: deque[tuple[float, Callable[[], Any], Future[Any]]] = deque()
        self._rest: deque[tuple[float, Callable[[], Any], Future[Any]]] = deque()
        self._closing = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}_{i}", daemon=True) for i in range(n)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, work: Callable[[], T], *, first: bool) -> Future[T]:
        future: Future[T] = Future()
        with self._ready:
            if self._closing:
                raise RuntimeError("the store is closed")
            (self._first if first else self._rest).append((time.monotonic(), work, future))
            self._ready.notify()
        return future

    def shutdown(self) -> None:
        """Runs what is queued, then ends the threads."""
        with self._ready:
            self._closing = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join()

    def _take(self) -> tuple[Callable[[], Any], Future[Any]] | None:
        with self._ready:
            while not self._first and not self._rest:
                if self._closing:
                    return None
                self._ready.wait()
            rest_waited = self._rest and time.monotonic() - self._rest[0][0] >= self.PATIENCE
            queue = self._first if self._first and not rest_waited else self._rest
            _, work, future = queue.popleft()
            return work, future

    def _work(self) -> None:
        while (taken := self._take()) is not None:
            work, future = taken
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = work()
            except BaseException as e:  # handed to the awaiting coroutine, as an executor does
                future.set_exception(e)
            else:
                future.set_result(result)


class _Checkpoints:
    """Copies SQLite's write-ahead log back into the database file every second, on a
    thread and a connection of its own. Left to itself, SQLite does it inside whichever
    commit takes the log past 1,000 pages (`wal_autocheckpoint`, turned off on the
    store's connections): that commit, an ack's say, then waits 50-100 ms (bench/'s
    burst measured it). A PASSIVE checkpoint neither waits for the writer nor blocks it
    (sqlite.org/c3ref/wal_checkpoint_v2.html); what it cannot copy yet waits for the
    next one, and the log is reused from its start once it has been copied whole."""

    EVERY = 1.0  # seconds

    def __init__(self, path: str) -> None:
        self._path = path
        self._stopping = threading.Event()
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="seva-db-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        conn = sqlite3.connect(self._path, timeout=0, check_same_thread=False)
        try:
            while not self._stopping.wait(self.EVERY):
                self._checkpoint(conn)
            self._checkpoint(conn)
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as e:  # tried again in a second; the store's health says more
            if not self._failed:
                log.warning("store.checkpoint_failed error=%s", e)
            self._failed = True
        else:
            self._failed = False


def _accept_grouped(tx: Tx, batch: list[tuple[str, str, str]]) -> list[bool]:
    """Stores a group of (source, event id, payload); for each, whether it is new. The
    same event twice in one group is new only the first time."""
    answers = [False] * len(batch)
    for source in {s for s, _, _ in batch}:
        first: dict[str, int] = {}
        for i, (s, event_id, _) in enumerate(batch):
            if s == source:
                first.setdefault(event_id, i)
        events = [(event_id, batch[i][2]) for event_id, i in first.items()]
        for (event_id, _), new in zip(events, tx.accept_events(source, events), strict=True):
            answers[first[event_id]] = new
    return answers


def _why(e: Exception) -> str:
    """The driver's own words, first line only (never the statement or its values)."""
    orig = getattr(e, "orig", None) or e
    first = (str(orig).strip().splitlines() or [""])[0][:200]
    return f"{type(orig).__name__}: {first}"


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def make_engine(
    url: str, *, echo: bool = False, pool_size: int = 5, own_checkpoints: bool = False
) -> Engine:
    """`own_checkpoints`: SQLite's log is checkpointed by `_Checkpoints` (a `Store` on the
    event loop), not inside commits; a short-lived user's log is checkpointed when its
    last connection closes."""
    if url.startswith("sqlite"):
        memory = ":memory:" in url or url in ("sqlite://", "sqlite:///")
        pool: dict[str, Any] = {} if memory else {"pool_size": pool_size, "max_overflow": 0}
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False}, **pool)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets readers run beside the writer; a busy timeout rides out short locks.
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            if own_checkpoints and not memory:  # see _Checkpoints
                cur.execute("PRAGMA wal_autocheckpoint=0")
            # Another process's lock is waited out this long; the one writer in this
            # process never waits (one database thread), and an ack must not either.
            cur.execute("PRAGMA busy_timeout=1000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=pool_size, max_overflow=0)
