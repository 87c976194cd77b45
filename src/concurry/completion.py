"""Completion order: futures of any kind in, finished futures out, as they finish.

The engine under ``wait``/``gather`` and their async versions.

- ``concurrent.futures`` futures (ours included) get one waiter object appended to their waiter
  list, exactly as ``concurrent.futures.wait`` does, and removed again afterwards, so waiting
  is event-driven and repeated waits on the same pending futures leave nothing behind
  (``concurrent.futures`` has no public way to remove a done callback). This waiter protocol,
  the state names and ``outcome``'s direct reads of a finished future are private internals,
  pinned on every supported Python by ``tests/test_future_conformance.py``.
- Any other ``BaseFuture`` (an ``AsyncioFuture`` of another loop, ...) reports through
  ``add_done_callback``; asyncio futures of the running loop through their own callbacks.
- Remote futures whose class defines ``__concurry_poll__(futures, timeout) -> done futures``
  (Ray) are checked in batches by the waiting thread, at intervals chosen by
  ``PollingAlgorithm``. When every future waited on is remote (and the wait blocks a thread),
  the batch check itself is the sleep: it waits up to the interval for the first to finish
  (``ray.wait``), so results are seen at once, and no waiter is installed (a ``RayFuture``
  would then be completed by Ray's per-call callback, which costs more than the batch check).
  Otherwise a remote future that is also a ``concurrent.futures`` future (``RayFuture``) gets
  both: the waiter reports it, the batch check settles it should its own completion be late.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures as cf
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED
from typing import Any

from .constants import ExecutionMode, PollingAlgorithm
from .futures import AsyncioFuture, remaining

__all__ = ["DONE_STATES", "Deadline", "async_completed", "completed", "outcome", "poll_function"]


# A future cancelled before its executor noticed (CANCELLED) is done for us too; one cancelled
# while we wait is reported when its executor discards it, as with ``concurrent.futures.wait``.
DONE_STATES = (FINISHED, CANCELLED_AND_NOTIFIED, CANCELLED)
_TIMEOUTS = (TimeoutError, cf.TimeoutError, asyncio.TimeoutError)


class Deadline(TimeoutError):
    """Raised by the completion iterators at the deadline; callers turn it into their message."""


def poll_function(x: Any) -> Callable[[list[Any]], Iterable[Any]] | None:
    """The batch-check function of a remote future's class, or ``None`` for local futures."""
    return getattr(type(x), "__concurry_poll__", None)


def outcome(f: Any) -> tuple[bool, Any]:
    """``(True, result)`` or ``(False, exception)`` of a finished future (any kind)."""
    if isinstance(f, cf.Future):
        if f._state == FINISHED:
            exc = f._exception
            return (True, f._result) if exc is None else (False, exc)
        return False, cf.CancelledError()
    if f.cancelled():
        return False, cf.CancelledError()
    if isinstance(f, asyncio.Future):
        exc = f.exception()
        return (True, f.result()) if exc is None else (False, exc)
    try:
        return True, f.result(0)
    except BaseException as exc:  # the future's own failure, handed back as a value
        return False, exc


# ---------------------------------------------------------------------------------------------
# Polling remote futures (``PollingAlgorithm``).


class _Poller:
    """Checks remote futures in batches; the interval follows the configured algorithm."""

    MAX_INTERVAL = 1.0

    def __init__(self) -> None:
        from .config import global_config

        self.algorithm = PollingAlgorithm.parse(global_config.lookup(ExecutionMode.RAY, "polling_algorithm"))
        self.base = float(global_config.lookup(ExecutionMode.RAY, "polling_interval"))
        self.interval = self.base
        self.empty_polls = 0
        self.groups: dict[Callable[..., Any], set[Any]] = {}

    def add(self, poll: Callable[..., Any], future: Any) -> None:
        self.groups.setdefault(poll, set()).add(future)

    def __bool__(self) -> bool:
        return any(self.groups.values())

    def poll(self, timeout: float = 0) -> list[Any]:
        """One batch check per kind of remote future (waiting up to ``timeout`` seconds in the
        first for something to finish); returns the newly finished ones."""
        finished: list[Any] = []
        for poll, pending in self.groups.items():
            if pending:
                done = list(poll(list(pending), timeout))
                timeout = 0
                pending.difference_update(done)
                finished.extend(done)
        self._next_interval(bool(finished))
        return finished

    def _next_interval(self, progressed: bool) -> None:
        algo, base = self.algorithm, self.base
        self.empty_polls = 0 if progressed else self.empty_polls + 1
        if algo is PollingAlgorithm.FIXED:
            interval = base
        elif algo is PollingAlgorithm.EXPONENTIAL:
            interval = base if progressed else self.interval * 2
        elif algo is PollingAlgorithm.PROGRESSIVE:
            interval = base * (1, 2, 5, 10, 20, 50, 100)[min(self.empty_polls // 10, 6)]
        else:  # adaptive: speed up while things finish, back off while nothing does
            interval = self.interval / 2 if progressed else self.interval * 1.5
        self.interval = min(max(interval, base), max(self.MAX_INTERVAL, base))


# ---------------------------------------------------------------------------------------------
# The collection: futures in, finished futures out in completion order.


class _Collection:
    """Watches a set of pending futures and queues each one as it finishes.

    ``wake`` is called (from any thread) whenever something was queued. The object itself is
    the ``concurrent.futures`` waiter (``add_result``/``add_exception``/``add_cancelled``).
    """

    def __init__(self, futures: list[Any], wake: Callable[[], None], loop: Any = None):
        # remote futures alone, waited on by a blocked thread: the batch check is the sleep
        self.remote_only = loop is None and all(poll_function(f) is not None for f in futures)
        self.finished: collections.deque[Any] = collections.deque()
        self.left = 0  # futures not handed over by take_finished yet
        self.wake = wake
        self.active = True
        self.poller: _Poller | None = None
        self._installed: set[cf.Future] = set()  # a future leaves it once handed over
        self._loop_futures: list[tuple[asyncio.Future, Any]] = []
        for f in futures:
            self.left += 1
            self._watch(f, loop)

    # concurrent.futures waiter protocol (called under the future's condition)
    def add_result(self, future: Any) -> None:
        self.finished.append(future)
        self.wake()

    add_exception = add_cancelled = add_result

    def _relay(self, future: Any) -> None:
        if self.active:
            self.add_result(future)

    def _watch(self, f: Any, loop: Any) -> None:
        original = f  # what is queued when it finishes, whatever is watched in its place
        if isinstance(f, cf.Future):
            with f._condition:
                done = f._state in DONE_STATES
                if done:
                    self.finished.append(f)
                elif not self.remote_only:
                    f._waiters.append(self)
                    self._installed.add(f)
            poll = None if done else poll_function(f)
            if poll is not None:  # a remote one (RayFuture): also checked in batches
                self._poll(poll, f)
            return
        poll = poll_function(f)
        if poll is not None:
            self._poll(poll, f)
            return
        if isinstance(f, AsyncioFuture) and f._loop is loop:
            f = f._future
        if isinstance(f, asyncio.Future):
            if f.get_loop() is loop:
                callback = self._relay if f is original else (lambda _: self._relay(original))
                f.add_done_callback(callback)
                self._loop_futures.append((f, callback))
                return
            f = AsyncioFuture(f)
        if isinstance(f, AsyncioFuture) and f._in_loop_thread() and loop is None:
            raise RuntimeError(
                "cannot block on an asyncio future from its own running event loop; "
                "use 'await async_wait(...)' or 'await async_gather(...)'"
            )
        relay = self._relay
        f.add_done_callback(lambda _: relay(original))

    def _poll(self, poll: Callable[[list[Any]], Iterable[Any]], f: Any) -> None:
        if self.poller is None:
            self.poller = _Poller()
        self.poller.add(poll, f)

    def take_finished(self, timeout: float = 0) -> list[Any]:
        """Check remote futures (waiting up to ``timeout`` seconds for one), then hand over
        every future queued so far (each once)."""
        if self.poller:  # (one with a waiter installed was queued by its waiter)
            installed = self._installed
            self.finished.extend(f for f in self.poller.poll(timeout) if f not in installed)
        taken = []
        while self.finished:  # popleft, not copy-and-clear: other threads append meanwhile
            taken.append(self.finished.popleft())
        self.left -= len(taken)
        installed = self._installed
        for f in taken:  # detach now, not at close: the collection must not keep it alive
            if f in installed:
                installed.discard(f)
                self._detach(f)
        return taken

    def sleep_time(self, deadline: float | None) -> float | None:
        """How long to sleep before looking again (None: until woken); ``Deadline`` when the
        time is up. Remote futures are checked every polling interval."""
        seconds = remaining(deadline)
        if seconds == 0:
            raise Deadline
        if not self.poller:
            return seconds
        return self.poller.interval if seconds is None else min(seconds, self.poller.interval)

    def _detach(self, f: cf.Future) -> None:
        with f._condition:
            try:
                f._waiters.remove(self)
            except ValueError:
                pass

    def close(self) -> None:
        """Detach from every future still pending (nothing accumulates on repeated waits)."""
        self.active = False
        for f in self._installed:
            self._detach(f)
        for f, callback in self._loop_futures:
            f.remove_done_callback(callback)
        self._installed, self._loop_futures = set(), []


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
    return time.monotonic() + timeout


def completed(futures: list[Any], timeout: float | None) -> Iterator[Any]:
    """Yield ``futures`` (pending, distinct) as they finish; raise ``TimeoutError`` at the deadline."""
    deadline = _deadline(timeout)
    event = threading.Event()
    collection = _Collection(futures, event.set)
    del futures  # the collection holds what is pending; what is handed over is not kept
    block = 0.0  # how long the next batch check may wait (remote futures alone)
    try:
        while True:
            taken = collection.take_finished(block)
            taken.reverse()
            while taken:
                yield taken.pop()
            if collection.left == 0:
                return
            seconds = collection.sleep_time(deadline)
            if collection.remote_only:
                block = seconds or 0.0
            else:
                event.wait(seconds)
                event.clear()
    finally:
        collection.close()


async def async_completed(futures: list[Any], timeout: float | None) -> AsyncIterator[Any]:
    """The same, awaiting on the running loop instead of blocking the thread."""
    loop = asyncio.get_running_loop()
    deadline = _deadline(timeout)
    event = asyncio.Event()
    scheduled = [False]

    def on_loop() -> None:
        scheduled[0] = False
        event.set()

    def wake() -> None:
        if not scheduled[0]:
            scheduled[0] = True
            try:
                loop.call_soon_threadsafe(on_loop)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

    collection = _Collection(futures, wake, loop)
    del futures
    try:
        while True:
            taken = collection.take_finished()
            taken.reverse()
            while taken:
                yield taken.pop()
            if collection.left == 0:
                return
            seconds = collection.sleep_time(deadline)  # outside the try: Deadline is a TimeoutError
            try:
                await asyncio.wait_for(event.wait(), seconds)
            except _TIMEOUTS:
                pass
            event.clear()
    finally:
        collection.close()
