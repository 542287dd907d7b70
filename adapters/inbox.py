"""Handling the events an adapter stored in the inbox (`bot.ports.Inbox`), oldest first.

An event is acknowledged to its platform once stored; from then on this worker owns
it: it is handled until that succeeds. A database hiccup puts it back for a little
later; an error in its handling (a bug) is tried a few times, then set aside as failed
and logged, so one bad event never blocks the rest. A crash mid-way leaves it claimed
until the claim expires, and it is handled again (the core's constraints make a
second handling harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from bot.batch import Batch
from bot.ports import Clock, Inbox, InboxEvent, NotYet, StoreUnavailable, Unavailable

log = logging.getLogger("seva." + __name__)

BATCH = 20
IDLE = 1.0  # seconds between looks for events stored by another instance or put back
TRIES = 5  # handlings that failed with an error of its own before it is set aside
FIRST_WAIT, LONGEST_WAIT = timedelta(seconds=1), timedelta(minutes=1)
NOT_YET_WAIT = timedelta(milliseconds=500)  # a root being recorded takes milliseconds
NOT_YET_TRIES = 240  # two minutes at least: a claim's lease, the longest a post stays unsettled

ACKS_FIRST = 0.25  # seconds handling waits at most while events are being acknowledged

Handle = Callable[[InboxEvent], Awaitable[None]]
Order = Callable[[InboxEvent], str]  # events with the same key are handled in order


class Arrivals:
    """The requests an adapter is answering now (its acks): `with arrivals:` around each.
    The inbox lets them go first, and is woken the moment the last one is answered."""

    def __init__(self) -> None:
        self._count = 0
        self._none = asyncio.Event()
        self._none.set()

    def __enter__(self) -> None:
        self._count += 1
        self._none.clear()

    def __exit__(self, *exc: object) -> None:
        self._count -= 1
        if self._count == 0:
            self._none.set()

    async def quiet(self, most: float) -> None:
        """Returns once no request is being answered, or after `most` seconds."""
        if self._count:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(most):
                    await self._none.wait()


class InboxWorker:
    """Handles one source's stored events, woken when one is stored."""

    def __init__(
        self,
        inbox: Inbox,
        source: str,
        handle: Handle,
        clock: Clock,
        *,
        arrivals: Arrivals | None = None,
        order: Order = lambda event: "",
    ) -> None:
        self._inbox = inbox
        self._source = source
        self._handle = handle
        self._clock = clock
        self._arrivals = arrivals
        self._order = order
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0  # database hiccups in a row, for the wait before the next look
        self._marks: Batch[InboxEvent, None] = Batch()  # events handled, recorded together

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"inbox-{self._source}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.drain()
                self._failures = 0
            except StoreUnavailable as e:
                self._failures += 1
                wait = min(FIRST_WAIT * 2 ** min(self._failures, 6), LONGEST_WAIT)
                log.warning("inbox.unavailable source=%s error=%s", self._source, e)
                await asyncio.sleep(wait.total_seconds())
            except Exception:
                log.exception("inbox.failed source=%s", self._source)
                await asyncio.sleep(IDLE)

    async def drain(self) -> int:
        """Handles every event due now; how many were handled.

        Events that share an order key (`order`: a Slack thread, say) are handled one
        after another, oldest first; those of different keys side by side, so twenty
        agents answering twenty threads at once wait for each other's database work
        only, not for each other's whole handling. Up to BATCH are handled at once, and
        more are claimed as soon as there is room: a slow event holds up only the events
        of its own key, never the next ones claimed.
        """
        handled = 0
        last: dict[str, asyncio.Task[bool]] = {}  # each key's newest event in hand
        running: set[asyncio.Task[bool]] = set()
        marking = _Marking()

        def ended(key: str, task: asyncio.Task[bool]) -> None:
            nonlocal handled
            running.discard(task)
            if last.get(key) is task:
                del last[key]
            if not task.cancelled() and task.exception() is None and task.result():
                handled += 1

        try:
            while True:
                self._wake.clear()
                room = BATCH - len(running)
                events = await self._inbox.claim(self._source, room) if room else []
                for event in events:
                    key = self._order(event)
                    task = asyncio.create_task(self._handle_after(last.get(key), event, marking))
                    last[key] = task
                    running.add(task)
                    task.add_done_callback(functools.partial(ended, key))
                if not running:
                    break
                if not events or len(running) >= BATCH:
                    # Room, or an event stored meanwhile, before the next claim.
                    woken = asyncio.ensure_future(self._wake.wait())
                    await asyncio.wait({*running, woken}, return_when=asyncio.FIRST_COMPLETED)
                    woken.cancel()
        except asyncio.CancelledError:
            for pending in (*running, *marking.tasks):
                pending.cancel()
            raise
        finally:
            await asyncio.gather(*running, return_exceptions=True)
            await marking.wait()
        return handled

    async def _handle_after(
        self, before: asyncio.Task[bool] | None, event: InboxEvent, marking: _Marking
    ) -> bool:
        """Handles `event` once the event of its key before it is done; whether it was
        handled. Its record as done is written with the others that ended together,
        behind the work that answers and tweets, while the next events go on."""
        if before is not None:
            await asyncio.wait({before})
        await self._acks_first()
        if not await self._handle_until_kept(event):
            return False
        marking.start(self._marks.add(event, self._inbox_done))
        return True

    async def _inbox_done(self, events: list[InboxEvent]) -> list[None]:
        await self._inbox.done(events)
        return [None] * len(events)

    async def _acks_first(self) -> None:
        """While events are arriving, their acks go first (Slack waits for them, and a
        slow ack is sent again): handling waits, a quarter of a second at most."""
        if self._arrivals is not None:
            await self._arrivals.quiet(ACKS_FIRST)

    async def _handle_until_kept(self, event: InboxEvent) -> bool:
        """Handles one event, waiting out database hiccups (the event stays claimed:
        nothing can be written meanwhile anyway, and the ones after it keep their
        order). False when its handling failed with an error of its own."""
        failures = 0
        while True:
            try:
                await self._handle(event)
                return True
            except NotYet as e:
                await self._later(event, e)
                return False
            except (StoreUnavailable, Unavailable) as e:
                failures += 1
                wait = min(FIRST_WAIT * 2 ** min(failures - 1, 6), LONGEST_WAIT)
                log.warning(
                    "inbox.retry_later source=%s event_id=%s why=%s in=%s",
                    self._source,
                    event.event_id,
                    e,
                    wait.total_seconds(),
                )
                await asyncio.sleep(wait.total_seconds())
            except Exception as e:
                await self._failed(event, e)
                return False

    async def _later(self, event: InboxEvent, why: NotYet) -> None:
        """Back in the inbox for a little later; the events behind it go on meanwhile."""
        give_up = event.attempts >= NOT_YET_TRIES
        log.info(
            "inbox.not_yet source=%s event_id=%s attempt=%d why=%s",
            self._source,
            event.event_id,
            event.attempts,
            why,
        )
        await self._inbox.retry(event, self._clock.now() + NOT_YET_WAIT, str(why), give_up=give_up)
        self.wake_in(NOT_YET_WAIT.total_seconds())

    def wake_in(self, seconds: float) -> None:
        asyncio.get_running_loop().call_later(seconds, self._wake.set)

    async def _failed(self, event: InboxEvent, error: Exception) -> None:
        give_up = event.attempts >= TRIES
        until = self._clock.now() + FIRST_WAIT * 2 ** min(event.attempts, 6)
        why = f"{type(error).__name__}: {error}"
        log.error(
            "inbox.event_failed source=%s event_id=%s attempt=%d give_up=%s error=%s",
            self._source,
            event.event_id,
            event.attempts,
            give_up,
            why,
            exc_info=error,
        )
        await self._inbox.retry(event, until, why, give_up=give_up)


class _Marking:
    """The records of handled events being written while a drain goes on; the first
    error among them is raised once the drain ends (a database hiccup: the events stay
    claimed until their claim expires, then are handled again, harmlessly)."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()
        self._error: BaseException | None = None

    def start(self, write: Awaitable[None]) -> None:
        task = asyncio.ensure_future(write)
        self.tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and self._error is None:
            self._error = task.exception()

    async def wait(self) -> None:
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self._error is not None:
            raise self._error
