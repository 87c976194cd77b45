"""``RayFuture``: a concurry future over a Ray ``ObjectRef``; and how Ray's outcomes become ours.

A ``RayFuture`` is a real ``concurrent.futures.Future`` (a ``ConcurrentFuture``), so ``wait``,
``gather``, pools, callbacks and ``await`` treat it like any local future: it is completed by
Ray's own callback (``ObjectRef.future()``; see ``settle`` for where user callbacks run), and
``wait``/``gather`` also check pending ones in batches (``__concurry_poll__``). ``result()`` on a
future not done yet asks Ray directly (``ray.get``), the quickest way to one result.

Errors come back as the user's: a ``RayTaskError`` carrying the actor's ``CallFailed`` is
rebuilt as the exception the method raised (worker-side traceback attached as a note, as for
process workers); a dead actor (``RayActorError``) is ``WorkerCrashedError``; a cancelled task
is ``CancelledError``.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import threading
from collections.abc import Callable
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, FINISHED, PENDING
from typing import Any, TypeVar

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError, TaskCancelledError

from ..errors import WorkerCrashedError
from ..futures import ConcurrentFuture, _WaitTimeout, set_outcome
from .process_wire import decode_error
from .ray_actor import CallFailed

T = TypeVar("T")
# (Ray's exception, where, method) -> the caller's exception
Convert = Callable[[BaseException, str, str], BaseException]
_DONE = (FINISHED, CANCELLED_AND_NOTIFIED)


def ray_error(exc: BaseException, where: str = "", method: str = "the method") -> BaseException:
    """The exception a caller sees for Ray's ``exc``; ``where`` names the worker, ``method`` the call."""
    cause = exc.cause if isinstance(exc, RayTaskError) else exc
    if isinstance(cause, CallFailed):
        return decode_error(cause.encoded, where)
    if isinstance(exc, RayActorError):
        return WorkerCrashedError(f"{where or 'the Ray actor'} died: {exc}")
    if isinstance(exc, TaskCancelledError):
        return cf.CancelledError()
    if isinstance(exc, RayTaskError) and isinstance(cause, BaseException):
        if isinstance(cause, TypeError):  # the method's result could not be serialized by Ray
            return TypeError(f"{method} returned a value that cannot be sent back to the caller: {cause}")
        return cause
    return exc


class RayFuture(ConcurrentFuture[T]):
    """The future of a call in ray mode, over its ``ObjectRef`` (``object_ref``).

    ``cancel()`` succeeds, as in ``concurrent.futures``, only for a call that has not started:
    the actor takes it back (one round trip) and never runs it; a call that has started then
    shows ``running()``. Passed to another ray worker's call, it travels as its ``ObjectRef``.
    """

    def __init__(
        self,
        ref: Any = None,
        convert: Convert = ray_error,
        method: str = "the method",
        backend: Any = None,
        key: int = 0,
    ):
        super().__init__()
        self._ref = ref
        self._convert = convert
        self._method = method
        self._at = None if backend is None else (backend, key)  # the worker and call number it was sent as

    @classmethod
    def of(cls, ref: Any) -> RayFuture[Any]:
        """A future completed when ``ref`` is (``wrap_future(object_ref)``)."""
        future: RayFuture[Any] = cls(ref)
        ref.future().add_done_callback(lambda source: settle(future, source, ray_error))
        return future

    @property
    def object_ref(self) -> Any:
        """The Ray ``ObjectRef`` of this call's result (None until the call reached Ray)."""
        return self._ref

    def result(self, timeout: float | None = None) -> T:
        if self._state not in _DONE and self._ref is not None:
            self._fetch(timeout)
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state not in _DONE and self._ref is not None:
            self._fetch(timeout)
        return super().exception(timeout)

    def _fetch(self, timeout: float | None) -> None:
        try:
            value = ray.get(self._ref, timeout=timeout)
        except GetTimeoutError:
            raise _WaitTimeout(f"future did not finish within {timeout} s") from None
        except Exception as exc:
            set_outcome(self, None, self._convert(exc, "", self._method))
        else:
            set_outcome(self, value, None)

    def cancel(self) -> bool:
        # ``ray.cancel`` is not used: on an actor task it does not stop a queued call from
        # running (Ray 2.60), and right after submission it leaves the actor's later calls
        # waiting forever. The actor takes the call back itself, if it has not started.
        at = self._at
        if at is not None and self._state == PENDING and at[1] not in at[0].take_back([at[1]]):
            try:  # it started (or is over): cancel fails, as for a running call
                self.set_running_or_notify_cancel()
            except RuntimeError:  # its outcome arrived meanwhile
                pass
            return False
        if not super().cancel():
            return self.cancelled()
        self.set_running_or_notify_cancel()  # waiters (wait, as_completed) see it now
        return True

    @staticmethod
    def __concurry_poll__(futures: list[RayFuture[Any]]) -> list[RayFuture[Any]]:
        """``wait``/``gather``'s batch check: one ``ray.wait`` for every pending future; those
        Ray has finished are settled here, should their completion callback be late."""
        pending = {f._ref: f for f in futures if f._ref is not None and f._state not in _DONE}
        if pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0, fetch_local=False)
            late = [ref for ref in ready if pending[ref]._state not in _DONE]  # (callbacks ran meanwhile)
            if late:
                try:
                    values = ray.get(late, timeout=0)  # one get for all: per ref it costs a round trip
                except Exception:  # one of them failed: each gets its own outcome
                    for ref in late:
                        pending[ref]._fetch(0)
                else:
                    for ref, value in zip(late, values, strict=True):
                        set_outcome(pending[ref], value, None)
        return [f for f in futures if f._state in _DONE]

    def __reduce__(self) -> Any:
        # Passed inside an argument (unwrap_futures=False, or nested in a container), it travels
        # as a future over the same ref; the other side asks Ray when it needs the value.
        return (_rebuilt, (self._ref,))


def _rebuilt(ref: Any) -> RayFuture[Any]:
    return RayFuture(ref)


def settle(future: cf.Future, source: cf.Future, convert: Convert, method: str = "the method") -> None:
    """Copy the outcome of Ray's finished ``source`` into ``future`` (errors made ours).

    Called on Ray's callback thread, which is also the thread that handles every Ray reply to
    this process: while it runs nothing of Ray's finishes here. A future with done-callbacks
    (the user's: they may wait for another Ray future, or just be slow) is therefore settled
    on a thread of ours; one without is settled at once (the common case, no thread hop)."""
    if future.done():  # ``result()`` got it from Ray first (a set_result now would build an error)
        return
    if future._done_callbacks:
        _callbacks.run(_settle, future, source, convert, method)
    else:
        _settle(future, source, convert, method)


def _settle(future: cf.Future, source: cf.Future, convert: Convert, method: str) -> None:
    error = source.exception()
    if error is None:
        set_outcome(future, source.result(), None)
    else:
        set_outcome(future, None, convert(error, "", method))


CALLBACK_THREAD = "concurry-ray-callbacks"  # a stop() called there must not wait for calls it settles


class _CallbackThread:
    """Runs queued settles in order on one thread of ours, started when work arrives and
    ended when there is none (so no thread is left behind between bursts, or at exit)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: collections.deque = collections.deque()
        self._running = False

    def run(self, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            self._queue.append((fn, args))
            if self._running:
                return
            self._running = True
        try:
            threading.Thread(target=self._drain, name=CALLBACK_THREAD, daemon=True).start()
        except RuntimeError:  # interpreter shutting down: no new threads, run it here
            self._drain()

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._running = False
                    return
                fn, args = self._queue.popleft()
            fn(*args)  # (a user callback's own error is logged by concurrent.futures)


_callbacks = _CallbackThread()
_init_lock = threading.Lock()


def ensure_ray() -> None:
    """Start or join Ray as Ray itself does on first use, unless the user already did
    (``ray.init(address=...)``: that cluster is used)."""
    if ray.is_initialized():
        return
    with _init_lock:
        if not ray.is_initialized():
            ray.init()
