"""Waiting on many futures at once: ``wait``, ``gather``, ``async_wait``, ``async_gather`` (SPEC §7).

These functions shape the caller's input (lists, dicts, generators, plain values, coroutines)
and the answer (results in input order, dicts by key, ``(done, not_done)`` sets, progress bars).
Already-finished futures are read directly, without installing anything; the rest are waited
for, event-driven, by ``completion``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import inspect
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from .completion import DONE_STATES, Deadline, async_completed, completed, outcome, poll_function
from .constants import ReturnWhen
from .futures import BaseFuture, SyncFuture
from .progress import check_progress, progress_bar

__all__ = ["async_gather", "async_wait", "gather", "wait"]

# ---------------------------------------------------------------------------------------------
# Inputs: what the caller gave, as (key, item) pairs plus the shape of the answer.


def _items(fs: Any, more: tuple[Any, ...], what: str) -> tuple[list[Any], list[Any], bool]:
    """Split the caller's input into keys, items, and whether the answer is a dict."""
    if more:
        items = [fs, *more]
        for position, item in enumerate(items, 1):
            if _is_collection(item):
                raise TypeError(
                    f"{what}: pass one collection of futures, or futures as separate arguments; "
                    f"argument {position} is a {type(item).__name__}"
                )
        return list(range(len(items))), items, False
    if isinstance(fs, dict):
        return list(fs.keys()), list(fs.values()), True
    if _is_collection(fs):
        items = list(fs)
        return list(range(len(items))), items, False
    return [0], [fs], False


def _is_collection(x: Any) -> bool:
    return isinstance(x, (list, tuple, set, frozenset, dict)) or (
        isinstance(x, Iterable) and not isinstance(x, (str, bytes, bytearray)) and not _is_future(x)
    )


def _check(what: str, timeout: Any, progress: Any) -> None:
    """Refuse a bad ``timeout`` or ``progress`` before anything is waited on, naming it."""
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))):
        raise TypeError(f"{what}: timeout must be a number of seconds >= 0 or None, got {timeout!r}")
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"{what}: timeout must be a number of seconds >= 0 or None, got {timeout!r}")
    check_progress(progress, what)


def _is_future(x: Any) -> bool:
    return isinstance(x, (cf.Future, BaseFuture, asyncio.Future)) or poll_function(x) is not None


# ---------------------------------------------------------------------------------------------
# Shared bookkeeping of wait/gather.


class _Plan:
    """The caller's items, which are already resolved, and which pending future feeds which keys."""

    def __init__(self, fs: Any, more: tuple[Any, ...], *, loop: Any = None, what: str = "gather"):
        self.keys, items, self.is_dict = _items(fs, more, what)
        self.items = items
        self.done: list[tuple[Any, bool, Any]] = []  # (key, ok, value) in input order
        self.pending: dict[Any, list[Any]] = {}  # waitable -> keys
        self.tasks: dict[Any, Any] = {}  # key -> the task made for an awaitable (async only)
        for key, item in zip(self.keys, items, strict=True):
            waitable = self._waitable(item, loop, what)
            if waitable is None:
                self.done.append((key, True, item))
            elif isinstance(waitable, cf.Future):
                if waitable._state in DONE_STATES:
                    self.done.append((key, *outcome(waitable)))
                else:
                    self.pending.setdefault(waitable, []).append(key)
            else:
                if waitable is not item:
                    self.tasks[key] = waitable
                if poll_function(waitable) is None and waitable.done():
                    self.done.append((key, *outcome(waitable)))
                else:
                    self.pending.setdefault(waitable, []).append(key)

    @staticmethod
    def _waitable(item: Any, loop: Any, what: str) -> Any:
        """The object to wait on for ``item``, or ``None`` for a plain value."""
        if isinstance(item, (cf.Future, BaseFuture, asyncio.Future)) or poll_function(item) is not None:
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
        ok, value = outcome(future)
        return [(key, ok, value) for key in self.pending[future]]


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
    _check("gather", timeout, progress)
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
    bar = progress_bar(progress, plan.total, "gather")
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
                for future in completed(list(plan.pending), timeout):
                    for key, ok, value in plan.finished(future):
                        if not ok and not return_exceptions:
                            raise value
                        count += 1
                        if bar is not None:
                            bar.update(1)
                        yield key, value
            except Deadline:
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


def async_gather(
    fs: Any,
    *more: Any,
    return_exceptions: bool = False,
    iter: bool = False,
    timeout: float | None = None,
    progress: bool | dict[str, Any] = False,
) -> Any:
    """``gather`` for coroutines: awaits coroutines, tasks and any futures without blocking the loop.

    ``await async_gather(...)`` gives the results. With ``iter=True`` it gives ``(index_or_key,
    result)`` pairs in completion order: ``async for key, value in async_gather(fs, iter=True)``
    (``await``-ing it first works too).
    """
    _check("async_gather", timeout, progress)
    if iter:
        return _AsyncPairs(fs, more, return_exceptions, timeout, progress)
    return _async_gather_all(fs, more, return_exceptions, timeout, progress)


async def _async_gather_all(
    fs: Any, more: tuple[Any, ...], return_exceptions: bool, timeout: float | None, progress: Any
) -> Any:
    plan = _Plan(fs, more, loop=asyncio.get_running_loop(), what="gather")
    results = {}
    async for key, value in _async_gather_iter(plan, return_exceptions, timeout, progress):
        results[key] = value
    if plan.is_dict:
        return {key: results[key] for key in plan.keys}
    return [results[i] for i in range(plan.total)]


class _AsyncPairs:
    """``async_gather(..., iter=True)``: an async iterator of pairs, which ``await`` returns as is.

    Coroutines among the inputs become tasks only once iteration starts, on the running loop.
    """

    def __init__(self, *arguments: Any):
        self._arguments = arguments
        self._pairs: AsyncIterator[Any] | None = None

    def __await__(self) -> Any:
        return self
        yield  # a generator, as __await__ must be

    def __aiter__(self) -> _AsyncPairs:
        return self

    async def __anext__(self) -> Any:
        if self._pairs is None:
            fs, more, return_exceptions, timeout, progress = self._arguments
            plan = _Plan(fs, more, loop=asyncio.get_running_loop(), what="gather")
            self._pairs = _async_gather_iter(plan, return_exceptions, timeout, progress)
        return await self._pairs.__anext__()

    async def aclose(self) -> None:
        if self._pairs is not None:
            await self._pairs.aclose()


async def _async_gather_iter(
    plan: _Plan, return_exceptions: bool, timeout: float | None, progress: Any
) -> AsyncIterator[Any]:
    bar = progress_bar(progress, plan.total, "gather")
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
                async for future in async_completed(list(plan.pending), timeout):
                    for key, ok, value in plan.finished(future):
                        if not ok and not return_exceptions:
                            raise value
                        count += 1
                        if bar is not None:
                            bar.update(1)
                        yield key, value
            except Deadline:
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
        if isinstance(item, (cf.Future, BaseFuture, asyncio.Future)) or poll_function(item) is not None:
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
    _check("wait", timeout, progress)
    plan, returned = _wait_inputs(fs, more)
    return _wait_plan(plan, returned, when, timeout, progress)


def _wait_plan(plan: _Plan, returned: dict, when: ReturnWhen, timeout: Any, progress: Any) -> Any:
    bar = progress_bar(progress, plan.total, "wait")
    done_keys = {key for key, _, _ in plan.done}
    stop = any(_stops(when, ok, value) for _, ok, value in plan.done)
    if bar is not None:
        bar.update(len(done_keys))
    if not stop and plan.pending:
        iterator = completed(list(plan.pending), timeout)
        try:
            for future in iterator:
                keys = plan.pending[future]
                done_keys.update(keys)
                if bar is not None:
                    bar.update(len(keys))
                if _stops(when, *outcome(future)):
                    break
        except Deadline:
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
    _check("async_wait", timeout, progress)
    plan, returned = _wait_inputs(fs, more, loop=asyncio.get_running_loop())
    bar = progress_bar(progress, plan.total, "wait")
    done_keys = {key for key, _, _ in plan.done}
    stop = any(_stops(when, ok, value) for _, ok, value in plan.done)
    if bar is not None:
        bar.update(len(done_keys))
    if not stop and plan.pending:
        iterator = async_completed(list(plan.pending), timeout)
        try:
            async for future in iterator:
                keys = plan.pending[future]
                done_keys.update(keys)
                if bar is not None:
                    bar.update(len(keys))
                if _stops(when, *outcome(future)):
                    break
        except Deadline:
            pass
        finally:
            await iterator.aclose()
    return _wait_result(plan, returned, done_keys, bar)
