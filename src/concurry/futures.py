"""Futures returned by every call.

``BaseFuture`` is the one interface. Local modes return ``ConcurrentFuture`` (a real
``concurrent.futures.Future``, so ``concurrent.futures.wait``/``as_completed`` and
``asyncio.wrap_future`` accept it) or ``SyncFuture`` (born resolved, equally interoperable).
``AsyncioFuture`` adapts an asyncio future; ``wrap_future`` picks the right one. ``BaseFuture[T]``
is generic in the result type (``typing.Generic`` adds no per-future cost: no ``__new__`` or
``__init__``, only class-level ``__class_getitem__``), so ``wrap_future(1).result()`` is an ``int``.

Private ``concurrent.futures.Future`` internals are touched in exactly three places, each because
no public API can do it without a cost on every call: the two ``__init__`` below (a condition
built only when someone waits), ``force_cancel`` (cancel a running future at a stop deadline),
and ``completion``'s waiter installation. ``tests/test_future_conformance.py`` pins every
internal they rely on, on each Python the package supports, so a change in CPython fails there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import sys
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, FINISHED, PENDING, RUNNING
from typing import Any, Generic, TypeVar, overload

from .remote_traceback import user_frames

T = TypeVar("T")
F = TypeVar("F", bound="BaseFuture[Any]")

CancelledError = cf.CancelledError

if sys.version_info >= (3, 11):
    _WaitTimeout = TimeoutError  # concurrent.futures.TimeoutError is the builtin since 3.11
else:

    class _WaitTimeout(cf.TimeoutError, TimeoutError):
        """Python 3.10: ``concurrent.futures.TimeoutError`` is not the builtin ``TimeoutError``;
        a wait timeout raises this, which is both, so either ``except`` catches it."""


class BaseFuture(Generic[T]):
    """What every call returns: the ``concurrent.futures.Future`` API, plus ``await``.

    ``T`` is the result type: ``result()`` returns it and ``await future`` gives it.
    """

    __slots__ = ()

    def result(self, timeout: float | None = None) -> T:
        raise NotImplementedError

    def exception(self, timeout: float | None = None) -> BaseException | None:
        raise NotImplementedError

    def done(self) -> bool:
        raise NotImplementedError

    def cancelled(self) -> bool:
        raise NotImplementedError

    def running(self) -> bool:
        raise NotImplementedError

    def cancel(self) -> bool:
        raise NotImplementedError

    def add_done_callback(self, fn: Callable[[BaseFuture[T]], object]) -> None:
        raise NotImplementedError

    def __await__(self) -> Generator[Any, None, T]:
        raise NotImplementedError


class _LazyCondition:
    """The part of ``threading.Condition`` a ``Future`` uses, built only when someone waits.

    Most futures of a busy worker are finished before anyone blocks on them, so they only ever
    take the lock (``with``, ``cf.wait``'s acquire/release); the real ``Condition`` (sharing the
    same lock) is created under that lock by the first ``wait`` and notified from then on.
    """

    __slots__ = ("_condition", "_lock")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._condition: threading.Condition | None = None

    def acquire(self, *args: Any) -> bool:
        return self._lock.acquire(*args)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        self._lock.__exit__(*exc_info)

    def wait(self, timeout: float | None = None) -> bool:
        if self._condition is None:
            self._condition = threading.Condition(self._lock)
        return self._condition.wait(timeout)

    def notify(self, n: int = 1) -> None:
        if self._condition is not None:
            self._condition.notify(n)

    def notify_all(self) -> None:
        if self._condition is not None:
            self._condition.notify_all()


class ConcurrentFuture(cf.Future[T], BaseFuture[T]):
    """A thread-safe future; it *is* a ``concurrent.futures.Future``."""

    def __init__(self) -> None:
        # cf.Future.__init__, with a condition that costs little until someone waits (hot path).
        # The attribute set must equal cf.Future()'s (pinned by test_future_conformance.py).
        self._condition = _LazyCondition()
        self._state = PENDING
        self._result = None
        self._exception = None
        self._waiters = []
        self._done_callbacks = []

    def __await__(self) -> Generator[Any, None, T]:
        return asyncio.wrap_future(self).__await__()

    if sys.version_info < (3, 11):

        def result(self, timeout: float | None = None) -> T:
            try:
                return super().result(timeout)
            except cf.TimeoutError as exc:
                if isinstance(exc, TimeoutError) or self._raised(exc):
                    raise  # the call itself raised it
                raise _WaitTimeout(f"future did not finish within {timeout} s") from None

        def _raised(self, exc: BaseException) -> bool:
            """Is ``exc`` the call's own exception (not the wait running out)?"""
            return self.done() and not self.cancelled() and self.exception(0) is exc

        def exception(self, timeout: float | None = None) -> BaseException | None:
            try:
                return super().exception(timeout)
            except cf.TimeoutError:
                raise _WaitTimeout(f"future did not finish within {timeout} s") from None

    # __repr__ is cf.Future's: "<ConcurrentFuture at 0x... state=finished returned int>"


# SyncFutures are born finished and never change state, so they can share one condition:
# it is only ever taken briefly (by cancel(), add_done_callback(), cf.wait()), and it is
# re-entrant, which cf.wait() needs when it locks several of them at once.
_SHARED_CONDITION = threading.Condition()


class SyncFuture(ConcurrentFuture[T]):
    """An already-resolved future (``sync`` mode, plain values given to ``wrap_future``)."""

    @overload
    def __init__(self: SyncFuture[T], result: T, exception: None = None) -> None: ...
    @overload
    def __init__(self: SyncFuture[Any], result: Any, exception: BaseException) -> None: ...
    @overload
    def __init__(self: SyncFuture[Any], *, exception: BaseException) -> None: ...
    @overload
    def __init__(self: SyncFuture[None], result: None = None, exception: None = None) -> None: ...

    def __init__(self, result: Any = None, exception: BaseException | None = None) -> None:
        self._condition = _SHARED_CONDITION
        self._state = FINISHED
        self._result = result
        self._exception = exception
        self._waiters = []
        self._done_callbacks = []

    def __reduce__(self) -> Any:
        # A resolved future can travel (a ray worker's method returning a nested worker's future)
        return (SyncFuture, (self._result, self._exception))


class _ChainedFuture(ConcurrentFuture[T]):
    """A ``ConcurrentFuture`` mirroring a foreign ``concurrent.futures.Future``."""

    def __init__(self, source: cf.Future[T]):
        super().__init__()
        self._source = source
        source.add_done_callback(self._copy_outcome)

    def _copy_outcome(self, source: cf.Future[T]) -> None:
        if source.cancelled():
            super().cancel()
            return
        exc = source.exception()
        if self.set_running_or_notify_cancel():
            if exc is None:
                self.set_result(source.result())
            else:
                self.set_exception(exc)

    def cancel(self) -> bool:
        return self._source.cancel() and super().cancel()

    def running(self) -> bool:
        return self._source.running()

    def __repr__(self) -> str:  # the public class's name, not this private one
        return super().__repr__().replace(type(self).__name__, "ConcurrentFuture", 1)


class AsyncioFuture(BaseFuture[T]):
    """Adapts an ``asyncio.Future`` (or task) so other threads can block on it."""

    __slots__ = ("_future", "_loop")

    def __init__(self, future: asyncio.Future[T]):
        self._future = future
        self._loop = future.get_loop()

    def _as_concurrent(self) -> cf.Future[T]:
        """A thread-safe mirror of the asyncio future: the outcome is copied over when the
        source finishes, and cancelling the mirror cancels the source (as ``await`` would)."""
        mirror: cf.Future[T] = cf.Future()
        source, loop = self._future, self._loop
        if source.done():  # copy it here: its loop may be stopped or closed by now
            _copy_outcome(source, mirror)
            return mirror

        def cancel_source(_: cf.Future) -> None:
            if mirror.cancelled():
                try:
                    loop.call_soon_threadsafe(source.cancel)
                except RuntimeError:  # its loop is closed: the source can no longer finish
                    pass

        if self._in_loop_thread():
            source.add_done_callback(lambda _: _copy_outcome(source, mirror))
        else:
            loop.call_soon_threadsafe(source.add_done_callback, lambda _: _copy_outcome(source, mirror))
        mirror.add_done_callback(cancel_source)
        return mirror

    def _in_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _blocking_wait(self, timeout: float | None) -> cf.Future[T]:
        if self._future.done():
            if self._future.cancelled():
                # asyncio.CancelledError is not concurrent.futures.CancelledError
                raise CancelledError()
            return self._future  # type: ignore[return-value]
        if self._in_loop_thread():
            raise RuntimeError("cannot block on an asyncio future from its own event loop; use 'await'")
        mirror = self._as_concurrent()
        try:
            cf.wait([mirror], timeout=timeout)
        except BaseException:
            raise
        if not mirror.done():
            raise TimeoutError(f"future did not finish within {timeout} s")
        return mirror

    def result(self, timeout: float | None = None) -> T:
        return self._blocking_wait(timeout).result()

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return self._blocking_wait(timeout).exception()

    def done(self) -> bool:
        return self._future.done()

    def cancelled(self) -> bool:
        return self._future.cancelled()

    def running(self) -> bool:
        return not self._future.done()

    def cancel(self) -> bool:
        if self._future.done():
            return False
        if self._in_loop_thread():
            return self._future.cancel()
        self._loop.call_soon_threadsafe(self._future.cancel)
        return True

    def add_done_callback(self, fn: Callable[[BaseFuture[T]], object]) -> None:
        def callback(_: asyncio.Future[T]) -> None:
            fn(self)

        if self._future.done() and not self._in_loop_thread():
            fn(self)  # at once, like concurrent.futures (its loop may be closed by now)
            return
        if self._in_loop_thread():
            self._future.add_done_callback(callback)
        else:
            self._loop.call_soon_threadsafe(self._future.add_done_callback, callback)

    def __await__(self) -> Generator[Any, None, T]:
        if self._in_loop_thread():
            return self._future.__await__()
        return asyncio.wrap_future(self._as_concurrent()).__await__()

    def __repr__(self) -> str:
        """As ``concurrent.futures.Future`` says it: ``<AsyncioFuture at 0x... state=finished
        returned int>`` (``raised KeyError``, ``state=cancelled``, ``state=running``)."""
        future, where = self._future, f"<{type(self).__name__} at {id(self):#x} state="
        if not future.done():
            return f"{where}running>"
        if future.cancelled():
            return f"{where}cancelled>"
        error = future.exception()
        if error is not None:
            return f"{where}finished raised {type(error).__name__}>"
        return f"{where}finished returned {type(future.result()).__name__}>"


def _copy_outcome(source: asyncio.Future[T], mirror: cf.Future[T]) -> None:
    """Give ``mirror`` the outcome of the finished ``source`` (unless it was cancelled meanwhile)."""
    try:
        if source.cancelled():
            mirror.cancel()
        elif source.exception() is not None:
            mirror.set_exception(source.exception())
        else:
            mirror.set_result(source.result())
    except cf.InvalidStateError:  # the mirror was cancelled first
        pass


# A future overlaps "any value" (overload 4); mypy takes the first overload that matches, as wanted.
@overload
def wrap_future(value: F) -> F: ...  # type: ignore[overload-overlap]
@overload
def wrap_future(value: cf.Future[T]) -> ConcurrentFuture[T]: ...  # type: ignore[overload-overlap]
@overload
def wrap_future(value: asyncio.Future[T]) -> AsyncioFuture[T]: ...  # type: ignore[overload-overlap]
@overload
def wrap_future(value: T) -> SyncFuture[T]: ...


def wrap_future(value: Any) -> BaseFuture[Any]:
    """Turn a future (``concurrent.futures``, ``asyncio``) or a plain value into a ``BaseFuture``.

    A ``BaseFuture`` is returned unchanged; a plain value becomes a resolved ``SyncFuture``.
    A Ray ``ObjectRef`` becomes a ``RayFuture``.
    """
    if isinstance(value, BaseFuture):
        return value
    if isinstance(value, cf.Future):
        return _ChainedFuture(value)
    if isinstance(value, asyncio.Future):
        return AsyncioFuture(value)
    if _object_ref_wrapper is not None and _is_ray_object_ref(value):
        return _object_ref_wrapper(value)
    return SyncFuture(result=value)


def _is_ray_object_ref(value: Any) -> bool:
    cls = type(value)
    return cls.__name__ == "ObjectRef" and cls.__module__.split(".")[0] == "ray"


# How ``wrap_future`` makes a ``RayFuture`` of an ``ObjectRef``: registered by ``backends`` (which
# knows where ray mode lives), so this module never imports the backends.
_object_ref_wrapper: Callable[[Any], BaseFuture[Any]] | None = None


def register_object_ref_wrapper(wrapper: Callable[[Any], BaseFuture[Any]]) -> None:
    global _object_ref_wrapper
    _object_ref_wrapper = wrapper


def remaining(deadline: float | None) -> float | None:
    """Seconds left until a ``time.monotonic()`` deadline (never negative); None for no deadline."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def force_cancel(future: cf.Future[Any]) -> bool:
    """Cancel a future even if it is already running (used only when a stop times out).

    ``concurrent.futures`` refuses to cancel a running future; a worker that ignores its stop
    deadline must still never leave the caller waiting forever, so we move the future to the
    cancelled state ourselves. The worker's late result is then dropped (see ``set_outcome``).
    This does what ``Future.cancel`` plus ``set_running_or_notify_cancel`` do, with the private
    state, waiters and ``_invoke_callbacks`` that test_future_conformance.py pins per version.
    """
    with future._condition:
        if future._state not in (PENDING, RUNNING):
            return future._state == CANCELLED_AND_NOTIFIED
        future._state = CANCELLED_AND_NOTIFIED
        for waiter in future._waiters:
            waiter.add_cancelled(future)
        future._condition.notify_all()
    future._invoke_callbacks()
    return True


def set_outcome(future: cf.Future[Any], result: Any, error: BaseException | None) -> None:
    """Resolve a future unless someone (cancel at stop, a crash) already resolved it."""
    try:
        if error is None:
            future.set_result(result)
        else:  # from the user's frame on: not the backend loop that caught it (cheap, errors only)
            error.__traceback__ = user_frames(error.__traceback__)
            future.set_exception(error)
    except cf.InvalidStateError:
        pass
