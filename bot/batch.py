"""A group write: items handed in together are written together (pure asyncio, no I/O)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batch(Generic[T, R]):
    """Items written together: one handed in while a write is under way waits for the
    next write and shares it (a group commit), so a burst of twenty costs a few units of
    work instead of twenty. `write` answers each item in order; `add` returns its item's
    answer, or raises the error that write met. An answer that is an exception is
    raised for its own item only (a write that falls back to one item at a time).
    `most`: items in one write at most (the rest wait for the next); `writers`: writes
    under way at once (a database that takes several writers at a time)."""

    def __init__(self, most: int | None = None, writers: int = 1) -> None:
        self._most = most
        self._writers = writers
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._writing: set[asyncio.Task[None]] = set()

    async def add(self, item: T, write: Callable[[list[T]], Awaitable[list[R]]]) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        # A writer that has finished may not have left the set yet: count those running.
        if sum(not task.done() for task in self._writing) < self._writers:
            task = asyncio.create_task(self._write_all(write))
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)
        return await future

    async def _write_all(self, write: Callable[[list[T]], Awaitable[list[R]]]) -> None:
        while self._waiting:
            most = self._most or len(self._waiting)
            batch, self._waiting = self._waiting[:most], self._waiting[most:]
            try:
                answers = await write([item for item, _ in batch])
            except Exception as e:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            for (_, future), answer in zip(batch, answers, strict=True):
                if future.done():
                    continue
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
