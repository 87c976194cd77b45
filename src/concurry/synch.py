"""Waiting on many futures at once: ``wait``, ``gather``, ``async_wait``, ``async_gather`` (SPEC §7).

All four share one idea: a *collection* notices futures finishing and hands them over in
completion order.

- ``concurrent.futures`` futures (ours included) get one waiter object appended to their waiter
  list, exactly as ``concurrent.futures.wait`` does, and removed again afterwards, so waiting
  is event-driven and repeated waits on the same pending futures leave nothing behind.
- Any other ``BaseFuture`` (an ``AsyncioFuture`` of another loop, ...) reports through
  ``add_done_callback``; asyncio futures of the running loop through their own callbacks.
- Remote futures whose class defines ``__concurry_poll__(futures) -> done futures`` (Ray) are
  checked in batches by the waiting thread, at intervals chosen by ``PollingAlgorithm``.

Already-finished futures are read directly, without installing anything.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures as cf
import inspect
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED
from typing import Any

from .constants import ExecutionMode, PollingAlgorithm, ReturnWhen
from .futures import AsyncioFuture, BaseFuture, SyncFuture

__all__ = ["async_gather", "async_wait", "gather", "wait"]

# A future cancelled before its executor noticed (CANCELLED) is done for us too; one cancelled
# while we wait is reported when its executor discards it, as with ``concurrent.futures.wait``.
_DONE_STATES = (FINISHED, CANCELLED_AND_NOTIFIED, CANCELLED)
_TIMEOUTS = (TimeoutError, cf.TimeoutError, asyncio.TimeoutError)


class _Deadline(TimeoutError):
    """Raised by the completion iterators at the deadline; callers turn it into their message."""


# ---------------------------------------------------------------------------------------------
# Inputs: what the caller gave, as (key, item) pairs plus the shape of the answer.


def _items(fs: Any, more: tuple[Any, ...]) -> tuple[list[Any], list[Any], bool]:
    """Split the caller's input into keys, items, and whether the answer is a dict."""
    if more:
        items = [fs, *more]
        return list(range(len(items))), items, False
    if isinstance(fs, dict):
        return list(fs.keys()), list(fs.values()), True
    if isinstance(fs, (list, tuple, set, frozenset)) or (
        isinstance(fs, Iterable) and not isinstance(fs, (str, bytes, bytearray, dict)) and not _is_future(fs)
    ):
        items = list(fs)
        return list(range(len(items))), items, False
    return [0], [fs], False


def _is_future(x: Any) -> bool:
    return isinstance(x, (cf.Future, BaseFuture, asyncio.Future)) or _poll_function(x) is not None


def _poll_function(x: Any) -> Callable[[list[Any]], Iterable[Any]] | None:
    return getattr(type(x), "__concurry_poll__", None)


def _outcome(f: Any) -> tuple[bool, Any]:
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
# Polling remote futures (SPEC §7 PollingAlgorithm).


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

    def poll(self) -> list[Any]:
        """One batch check per kind of remote future; returns the newly finished ones."""
        finished: list[Any] = []
        for poll, pending in self.groups.items():
            if pending:
                done = list(poll(list(pending)))
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

    def __init__(self, futures: Iterable[Any], wake: Callable[[], None], loop: Any = None):
        self.finished: collections.deque[Any] = collections.deque()
        self.wake = wake
        self.active = True
        self.poller: _Poller | None = None
        self._installed: list[cf.Future] = []
        self._loop_futures: list[tuple[asyncio.Future, Any]] = []
        for f in futures:
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
                if f._state in _DONE_STATES:
                    self.finished.append(f)
                else:
                    f._waiters.append(self)
                    self._installed.append(f)
            return
        poll = _poll_function(f)
        if poll is not None:
            if self.poller is None:
                self.poller = _Poller()
            self.poller.add(poll, f)
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

    def poll_remote(self) -> None:
        if self.poller:
            self.finished.extend(self.poller.poll())

    def next_poll(self, remaining: float | None) -> float | None:
        """How long to sleep before the next remote check (``remaining`` when nothing is remote)."""
        if not self.poller:
            return remaining
        return self.poller.interval if remaining is None else min(remaining, self.poller.interval)

    def close(self) -> None:
        """Detach from every future still pending (nothing accumulates on repeated waits)."""
        self.active = False
        for f in self._installed:
            with f._condition:
                try:
                    f._waiters.remove(self)
                except ValueError:
                    pass
        for f, callback in self._loop_futures:
            f.remove_done_callback(callback)
        self._installed = self._loop_futures = []


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
    return time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _completed(futures: list[Any], timeout: float | None) -> Iterator[Any]:
    """Yield ``futures`` (pending, distinct) as they finish; raise ``TimeoutError`` at the deadline."""
    deadline = _deadline(timeout)
    event = threading.Event()
    collection = _Collection(futures, event.set)
    left = len(futures)
    try:
        while True:
            collection.poll_remote()
            while collection.finished:
                left -= 1
                yield collection.finished.popleft()
            if left == 0:
                return
            remaining = _remaining(deadline)
            if remaining == 0:
                raise _Deadline
            event.wait(collection.next_poll(remaining))
            event.clear()
    finally:
        collection.close()


async def _async_completed(futures: list[Any], timeout: float | None) -> AsyncIterator[Any]:
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
    left = len(futures)
    try:
        while True:
            collection.poll_remote()
            while collection.finished:
                left -= 1
                yield collection.finished.popleft()
            if left == 0:
                return
            remaining = _remaining(deadline)
            if remaining == 0:
                raise _Deadline
            try:
                await asyncio.wait_for(event.wait(), collection.next_poll(remaining))
            except _TIMEOUTS:
                pass
            event.clear()
    finally:
        collection.close()


# ---------------------------------------------------------------------------------------------
# Shared bookkeeping of wait/gather.


class _Plan:
    """The caller's items, which are already resolved, and which pending future feeds which keys."""

    def __init__(self, fs: Any, more: tuple[Any, ...], *, loop: Any = None, what: str = "gather"):
        self.keys, items, self.is_dict = _items(fs, more)
        self.items = items
        self.done: list[tuple[Any, bool, Any]] = []  # (key, ok, value) in input order
        self.pending: dict[Any, list[Any]] = {}  # waitable -> keys
        self.tasks: dict[Any, Any] = {}  # key -> the task made for an awaitable (async only)
        for key, item in zip(self.keys, items, strict=True):
            waitable = self._waitable(item, loop, what)
            if waitable is None:
                self.done.append((key, True, item))
            elif isinstance(waitable, cf.Future):
                if waitable._state in _DONE_STATES:
                    self.done.append((key, *_outcome(waitable)))
                else:
                    self.pending.setdefault(waitable, []).append(key)
            else:
                if waitable is not item:
                    self.tasks[key] = waitable
                if _poll_function(waitable) is None and waitable.done():
                    self.done.append((key, *_outcome(waitable)))
                else:
                    self.pending.setdefault(waitable, []).append(key)

    @staticmethod
    def _waitable(item: Any, loop: Any, what: str) -> Any:
        """The object to wait on for ``item``, or ``None`` for a plain value."""
        if isinstance(item, (cf.Future, BaseFuture, asyncio.Future)) or _poll_function(item) is not None:
            return item
        if inspect.isawaitable(item):
            if loop is None:
                if inspect.iscoroutine(item):
                    item.close()  # never awaited: silence the warning, the error says why
                raise TypeError(f"{what}: got {type(item).__name__} {item!r}; use async_{what} to await it")
            return asyncio.ensure_future(item)
        return None

    @property
    def total(self) -> int:
        return len(self.keys)

    def finished(self, future: Any) -> list[tuple[Any, bool, Any]]:
        ok, value = _outcome(future)
        return [(key, ok, value) for key in self.pending[future]]


def _bar(progress: Any, total: int, desc: str) -> Any:
    if not progress:
        return None
    from .progress import ProgressBar

    settings = {"desc": desc, **progress} if isinstance(progress, dict) else {"desc": desc}
    return ProgressBar(total=total, **settings)


def _timeout_error(what: str, finished: int, total: int, timeout: float | None) -> TimeoutError:
    return TimeoutError(f"{what}: {finished} of {total} finished before the {timeout} s timeout")


def _raise(error: BaseException) -> None:
    raise error


# ---------------------------------------------------------------------------------------------
# gather


def gather(
    fs: Any,
    *more: Any,
    return_exceptions: bool = False,
    iter: bool = False,
    timeout: float | None = None,
    progress: bool | dict[str, Any] = False,
) -> Any:
    """Wait for futures and return their results (SPEC §7).

    A list/tuple/set/generator gives a list in input order, a dict gives a dict with the same
    keys, a single future a one-element list; plain values pass through as results. With
    ``iter=True`` a generator of ``(index_or_key, result)`` pairs in completion order is
    returned instead. The first failure is raised unless ``return_exceptions`` is true.
    ``timeout`` raises ``TimeoutError`` saying how many finished.
    """
    plan = _Plan(fs, more)
    if iter:
        return _gather_iter(plan, return_exceptions, timeout, progress)
    if not plan.pending and not progress:  # fast path: everything is already resolved
        if return_exceptions:
            values = [value for _, _, value in plan.done]
        else:
            values = [value if ok else _raise(value) for _, ok, value in plan.done]
        return dict(zip(plan.keys, values, strict=True)) if plan.is_dict else values
    results = {}
    for key, value in _gather_iter(plan, return_exceptions, timeout, progress):
        results[key] = value
    if plan.is_dict:
        return {key: results[key] for key in plan.keys}
    return [results[i] for i in range(plan.total)]


def _gather_iter(plan: _Plan, return_exceptions: bool, timeout: float | None, progress: Any) -> Iterator[Any]:
    bar = _bar(progress, plan.total, "gather")
    count = 0
    try:
        for key, ok, value in plan.done:
            if not ok and not return_exceptions:
                raise value
            count += 1
            if bar is not None:
                bar.update(1)
            yield key, value
        if plan.pending:
            try:
                for future in _completed(list(plan.pending), timeout):
                    for key, ok, value in plan.finished(future):
                        if not ok and not return_exceptions:
                            raise value
                        count += 1
                        if bar is not None:
                            bar.update(1)
                        yield key, value
            except _Deadline:
                raise _timeout_error("gather", count, plan.total, timeout) from None
    except GeneratorExit:
        if bar is not None:
            bar.stop()
        raise
    except BaseException:
        if bar is not None:
            bar.failure()
        raise
    if bar is not None:
        bar.success()


async def async_gather(
    fs: Any,
    *more: Any,
    return_exceptions: bool = False,
    iter: bool = False,
    timeout: float | None = None,
    progress: bool | dict[str, Any] = False,
) -> Any:
    """``gather`` for coroutines: awaits coroutines, tasks and any futures without blocking the loop.

    With ``iter=True`` the awaited value is an async iterator of ``(index_or_key, result)`` in
    completion order: ``async for key, value in await async_gather(fs, iter=True): ...``.
    """
    plan = _Plan(fs, more, loop=asyncio.get_running_loop(), what="gather")
    pairs = _async_gather_iter(plan, return_exceptions, timeout, progress)
    if iter:
        return pairs
    results = {}
    async for key, value in pairs:
        results[key] = value
    if plan.is_dict:
        return {key: results[key] for key in plan.keys}
    return [results[i] for i in range(plan.total)]


async def _async_gather_iter(
    plan: _Plan, return_exceptions: bool, timeout: float | None, progress: Any
) -> AsyncIterator[Any]:
    bar = _bar(progress, plan.total, "gather")
    count = 0
    try:
        for key, ok, value in plan.done:
            if not ok and not return_exceptions:
                raise value
            count += 1
            if bar is not None:
                bar.update(1)
            yield key, value
        if plan.pending:
            try:
                async for future in _async_completed(list(plan.pending), timeout):
                    for key, ok, value in plan.finished(future):
                        if not ok and not return_exceptions:
                            raise value
                        count += 1
                        if bar is not None:
                            bar.update(1)
                        yield key, value
            except _Deadline:
                raise _timeout_error("async_gather", count, plan.total, timeout) from None
    except GeneratorExit:
        if bar is not None:
            bar.stop()
        raise
    except BaseException:
        if bar is not None:
            bar.failure()
        raise
    if bar is not None:
        bar.success()


# ---------------------------------------------------------------------------------------------
# wait


def _wait_inputs(fs: Any, more: tuple[Any, ...], loop: Any = None) -> tuple[_Plan, dict[int, Any]]:
    plan = _Plan(fs, more, loop=loop, what="wait")
    # what the caller gets back for each input: its own future, a SyncFuture for a plain value,
    # and the task created for a coroutine
    returned: dict[int, Any] = {}
    for key, item in zip(plan.keys, plan.items, strict=True):
        if isinstance(item, (cf.Future, BaseFuture, asyncio.Future)) or _poll_function(item) is not None:
            returned[key] = item
        elif key in plan.tasks:
            returned[key] = plan.tasks[key]
        else:
            returned[key] = SyncFuture(result=item)
    return plan, returned


def _stops(return_when: ReturnWhen, ok: bool, value: Any) -> bool:
    """Whether a finished future ends the wait (a cancellation is not an exception, as in cf.wait)."""
    if return_when is ReturnWhen.FIRST_COMPLETED:
        return True
    return return_when is ReturnWhen.FIRST_EXCEPTION and not ok and not isinstance(value, cf.CancelledError)


def wait(
    fs: Any,
    *more: Any,
    timeout: float | None = None,
    return_when: ReturnWhen | str = ReturnWhen.ALL_COMPLETED,
    progress: bool | dict[str, Any] = False,
) -> tuple[set[Any], set[Any]]:
    """Wait until ``return_when`` (all / first / first exception) or ``timeout``; never raises on timeout.

    Returns ``(done, not_done)`` sets of the caller's own future objects (dict inputs: the
    values). A plain value counts as done and comes back wrapped in a ``SyncFuture``.
    """
    when = ReturnWhen.parse(return_when, "return_when")
    plan, returned = _wait_inputs(fs, more)
    return _wait_plan(plan, returned, when, timeout, progress)


def _wait_plan(plan: _Plan, returned: dict, when: ReturnWhen, timeout: Any, progress: Any) -> Any:
    bar = _bar(progress, plan.total, "wait")
    done_keys = {key for key, _, _ in plan.done}
    stop = any(_stops(when, ok, value) for _, ok, value in plan.done)
    if bar is not None:
        bar.update(len(done_keys))
    if not stop and plan.pending:
        iterator = _completed(list(plan.pending), timeout)
        try:
            for future in iterator:
                keys = plan.pending[future]
                done_keys.update(keys)
                if bar is not None:
                    bar.update(len(keys))
                if _stops(when, *_outcome(future)):
                    break
        except _Deadline:
            pass
        finally:
            iterator.close()
    return _wait_result(plan, returned, done_keys, bar)


def _wait_result(plan: _Plan, returned: dict, done_keys: set, bar: Any) -> tuple[set[Any], set[Any]]:
    done = {returned[key] for key in done_keys}
    not_done = {returned[key] for key in plan.keys if key not in done_keys}
    if bar is not None:
        if not_done:
            bar.stop()
        else:
            bar.success()
    return done, not_done


async def async_wait(
    fs: Any,
    *more: Any,
    timeout: float | None = None,
    return_when: ReturnWhen | str = ReturnWhen.ALL_COMPLETED,
    progress: bool | dict[str, Any] = False,
) -> tuple[set[Any], set[Any]]:
    """``wait`` for coroutines: accepts coroutines (run as tasks, which are returned), tasks and
    any futures, and awaits without blocking the event loop."""
    when = ReturnWhen.parse(return_when, "return_when")
    plan, returned = _wait_inputs(fs, more, loop=asyncio.get_running_loop())
    bar = _bar(progress, plan.total, "wait")
    done_keys = {key for key, _, _ in plan.done}
    stop = any(_stops(when, ok, value) for _, ok, value in plan.done)
    if bar is not None:
        bar.update(len(done_keys))
    if not stop and plan.pending:
        iterator = _async_completed(list(plan.pending), timeout)
        try:
            async for future in iterator:
                keys = plan.pending[future]
                done_keys.update(keys)
                if bar is not None:
                    bar.update(len(keys))
                if _stops(when, *_outcome(future)):
                    break
        except _Deadline:
            pass
        finally:
            await iterator.aclose()
    return _wait_result(plan, returned, done_keys, bar)
