"""The store of a set that lives in one process: a Python list, a lock, and per-waiter events.

Waiting never polls: a waiter registers (under the lock) with an id, waits on its own event for
at most the time the next rate units become available, and is set by whoever changes the state
(a release, a refund, a waiter leaving). Async waiters are woken on their own event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any


class _ThreadWaiter:
    """A thread's way to sleep until it is woken or its time is up."""

    __slots__ = ("event", "id")

    def __init__(self, waiter_id: float) -> None:
        self.id = waiter_id
        self.event = threading.Event()

    def wait(self, timeout: float | None) -> None:
        self.event.wait(timeout)
        self.event.clear()  # before the caller re-checks: a wake-up after this is kept

    def wake(self) -> None:
        self.event.set()


class _LoopWaiter:
    """An async waiter: woken on its own loop, awaited without blocking it."""

    __slots__ = ("future", "id", "loop")

    def __init__(self, waiter_id: float, loop: asyncio.AbstractEventLoop) -> None:
        self.id = waiter_id
        self.loop = loop
        self.future: asyncio.Future | None = None

    async def wait(self, timeout: float | None) -> None:
        self.future = future = self.loop.create_future()
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self.future = None

    def wake(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self._set)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _set(self) -> None:
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)


class ThreadStore:
    """State in a list, guarded by a ``threading.Lock``; waiters woken by id."""

    shared_across_processes = False
    pid = 0  # waiters of this store never belong to another process

    def __init__(self, size: int) -> None:
        self.view: list[float] = [0.0] * size
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiters: dict[float, Any] = {}
        self._local = threading.local()

    def thread_waiter(self) -> _ThreadWaiter:
        """This thread's waiter (made once per thread, kept for its next waits)."""
        waiter = getattr(self._local, "waiter", None)
        if waiter is None:
            waiter = self._local.waiter = _ThreadWaiter(float(next(self._ids)))
        self._waiters[waiter.id] = waiter
        return waiter

    def loop_waiter(self) -> _LoopWaiter:
        waiter = _LoopWaiter(float(next(self._ids)), asyncio.get_running_loop())
        self._waiters[waiter.id] = waiter
        return waiter

    def forget(self, waiter: Any) -> None:
        self._waiters.pop(waiter.id, None)

    def wake(self, ids: list[float]) -> list[float]:
        """Wake the waiters ``ids`` (called after the lock is released); none can be dead."""
        waiters = self._waiters
        for waiter_id in ids:
            waiter = waiters.get(waiter_id)
            if waiter is not None:
                waiter.wake()
        return []
