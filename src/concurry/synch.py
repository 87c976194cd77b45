"""Waiting on many futures at once: ``wait``, ``gather``, ``async_wait``, ``async_gather``.

These functions shape the caller's input (lists, dicts, generators, plain values, coroutines)
and the answer (results in input order, dicts by key, ``(done, not_done)`` sets, progress bars).
Already-finished futures are read directly, without installing anything; the rest are waited
for, event-driven, by ``completion``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import inspect
from collections.abc import AsyncIterator, Awaitable, Generator, Iterable, Iterator, Mapping
from typing import Any, Literal, TypeVar, overload

from .completion import DONE_STATES, Deadline, async_completed, completed, outcome, poll_function
from .constants import ReturnWhen
from .futures import BaseFuture, SyncFuture
from .progress import check_progress, progress_bar

__all__ = ["async_gather", "async_wait", "gather", "wait"]

K = TypeVar("K")

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
                    f"argument {position} is {'an' if type(item).__name__[0] in 'aeiouAEIOU' else 'a'} "
                    f"{type(item).__name__}"
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
        done, pending = self.done, self.pending
        for key, item in zip(self.keys, items, strict=True):
            if isinstance(item, cf.Future):  # ours and plain concurrent.futures: checked first
                if item._state in DONE_STATES:
                    ok, value = outcome(item)
                    done.append((key, ok, value))
                else:
                    pending.setdefault(item, []).append(key)
                continue
            waitable = self._waitable(item, loop, what)
            if waitable is None:
                self.done.append((key, True, item))
            elif isinstance(waitable, cf.Future):  # a concurrent future made for an awaitable
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
        """The outcome of a pending future, for each key it feeds; the plan forgets the future."""
        ok, value = outcome(future)
        return [(key, ok, value) for key in self.pending.pop(future)]

    def release(self) -> None:
        """Forget the caller's items: from now on outcomes are referenced only until handed over."""
        self.items = []


def _timeout_error(what: str, finished: int, total: int, timeout: float | None) -> TimeoutError:
    return TimeoutError(f"{what}: {finished} of {total} finished before the {timeout} s timeout")


def _raise(error: BaseException) -> None:
    raise error


# ---------------------------------------------------------------------------------------------
# gather
#
# Typed by the shape of the input (a mapping gives a dict by the same keys, anything else a list)
# and by ``iter``; results are ``Any``, since the inputs may mix futures of any type and plain values.


@overload
def gather(  # type: ignore[overload-overlap]
    fs: Mapping[K, object],
    *,
    return_exceptions: bool = ...,
    iter: Literal[False] = ...,
    timeout: float | None = ...,
    progress: bool | dict[str, Any] = ...,
) -> dict[K, Any]: ...
@overload
def gather(  # type: ignore[overload-overlap]
    fs: Mapping[K, object],
    *,
    return_exceptions: bool = ...,
    iter: Literal[True],
    timeout: float | None = ...,
    progress: bool | dict[str, Any] = ...,
) -> Iterator[tuple[K, Any]]: ...
@overload
def gather(
    fs: Any,
    *more: Any,
    return_exceptions: bool = ...,
    iter: Literal[False] = ...,
    timeout: float | None = ...,
    progress: bool | dict[str, Any] = ...,
) -> list[Any]: ...
@overload
def gather(
    fs: Any,
    *more: Any,
    return_exceptions: bool = ...,
    iter: Literal[True],
    timeout: float | None = ...,
    progress: bool | dict[str, Any] = ...,
) -> Iterator[tuple[Any, Any]]: ...


def gather(
    fs: Any,
    *more: Any,
    return_exceptions: bool = False,
    iter: bool = False,
    timeout: float | None = None,
    progress: bool | dict[str, Any] = False,
) -> Any:
    """Wait for futures and return their results.

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
    return _in_input_order(plan, dict(_gather_iter(plan, return_exceptions, timeout, progress)))


class _Tally:
    """What gather's iterators share: count outcomes, raise the first failure (unless
    ``return_exceptions``), drive the bar, and colour it by how the iteration ended."""

    def __init__(self, plan: _Plan, return_exceptions: bool, progress: Any, what: str):
        self.total, self.return_exceptions, self.what = plan.total, return_exceptions, what
        self.bar = progress_bar(progress, plan.total, "gather")
        self.count = 0

    def take(self, key: Any, ok: bool, value: Any) -> tuple[Any, Any]:
        if not ok and not self.return_exceptions:
            raise value
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)
        return key, value

    def timeout_error(self, timeout: float | None) -> TimeoutError:
        return _timeout_error(self.what, self.count, self.total, timeout)

    def __enter__(self) -> _Tally:
        return self

    def __exit__(self, kind: Any, *_: Any) -> None:
        if self.bar is None:
            return
        if kind is None:
            self.bar.success()
        elif issubclass(kind, GeneratorExit):  # the caller stopped iterating
            self.bar.stop()
        else:
            self.bar.failure()


# The iterators below hand over each outcome and keep no reference to it (entries are popped
# before they are yielded, no local holds one across a ``yield``), so a result the caller drops
# is freed at once, as with ``Executor.map``.


def _gather_iter(plan: _Plan, return_exceptions: bool, timeout: float | None, progress: Any) -> Iterator[Any]:
    plan.release()
    with _Tally(plan, return_exceptions, progress, "gather") as tally:
        entries = plan.done
        entries.reverse()
        while entries:
            yield tally.take(*entries.pop())
        if plan.pending:
            try:
                for future in completed(list(plan.pending), timeout):
                    entries = plan.finished(future)
                    del future
                    entries.reverse()
                    while entries:
                        yield tally.take(*entries.pop())
            except Deadline:
                raise tally.timeout_error(timeout) from None


def _in_input_order(plan: _Plan, results: dict[Any, Any]) -> Any:
    if plan.is_dict:
        return {key: results[key] for key in plan.keys}
    return [results[i] for i in range(plan.total)]


@overload
def async_gather(  # type: ignore[overload-overlap]
    fs: Mapping[K, object],
    *,
    return_exceptions: bool = ...,
    iter: Literal[False] = ...,
    timeout: float | None = ...,
    progress: bool | dict[str, Any] = ...,
) -> Awaitable[dict[K, Any]]: ...
@overload
def async_gather(
    fs: Any,
    *more: Any,
    return_exceptions: bool = ...,
    iter: Literal[False] = ...,
    timeout: float | None = ...,
    progress: bool | dict[str, Any] = ...,
) -> Awaitable[list[Any]]: ...
@overload
def async_gather(
    fs: Any,
    *more: Any,
    return_exceptions: bool = ...,
    iter: Literal[True],
    timeout: float | None = ...,
    progress: bool | dict[str, Any] = ...,
) -> _AsyncPairs: ...


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
    pairs = _async_gather_iter(plan, return_exceptions, timeout, progress)
    return _in_input_order(plan, {key: value async for key, value in pairs})


class _AsyncPairs:
    """``async_gather(..., iter=True)``: an async iterator of pairs, which ``await`` returns as is.

    Coroutines among the inputs become tasks only once iteration starts, on the running loop.
    """

    def __init__(self, *arguments: Any):
        self._arguments = arguments
        self._pairs: AsyncIterator[Any] | None = None

    def __await__(self) -> Generator[Any, None, _AsyncPairs]:
        return self
        yield  # a generator, as __await__ must be

    def __aiter__(self) -> _AsyncPairs:
        return self

    async def __anext__(self) -> tuple[Any, Any]:
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
    plan.release()
    with _Tally(plan, return_exceptions, progress, "async_gather") as tally:
        entries = plan.done
        entries.reverse()
        while entries:
            yield tally.take(*entries.pop())
        if plan.pending:
            try:
                async for future in async_completed(list(plan.pending), timeout):
                    entries = plan.finished(future)
                    del future
                    entries.reverse()
                    while entries:
                        yield tally.take(*entries.pop())
            except Deadline:
                raise tally.timeout_error(timeout) from None


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
    state = _Waiting(plan, returned, when, progress)
    if state.waiting:
        iterator = completed(list(plan.pending), timeout)
        try:
            for future in iterator:
                if state.record(future):
                    break
        except Deadline:
            pass
        finally:
            iterator.close()
    return state.result()


class _Waiting:
    """What both waits share: which inputs are done, whether ``return_when`` is met, the bar,
    and the ``(done, not_done)`` answer."""

    def __init__(self, plan: _Plan, returned: dict, when: ReturnWhen, progress: Any):
        self.plan, self.returned, self.when = plan, returned, when
        self.bar = progress_bar(progress, plan.total, "wait")
        self.done_keys = {key for key, _, _ in plan.done}
        if self.bar is not None:
            self.bar.update(len(self.done_keys))
        met = any(_stops(when, ok, value) for _, ok, value in plan.done)
        self.waiting = bool(plan.pending) and not met

    def record(self, future: Any) -> bool:
        """Note that ``future`` finished; True when the wait is over."""
        keys = self.plan.pending[future]
        self.done_keys.update(keys)
        if self.bar is not None:
            self.bar.update(len(keys))
        return _stops(self.when, *outcome(future))

    def result(self) -> tuple[set[Any], set[Any]]:
        done = {self.returned[key] for key in self.done_keys}
        not_done = {self.returned[key] for key in self.plan.keys if key not in self.done_keys}
        if self.bar is not None:
            if not_done:
                self.bar.stop()
            else:
                self.bar.success()
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
    state = _Waiting(plan, returned, when, progress)
    if state.waiting:
        iterator = async_completed(list(plan.pending), timeout)
        try:
            async for future in iterator:
                if state.record(future):
                    break
        except Deadline:
            pass
        finally:
            await iterator.aclose()
    return state.result()
