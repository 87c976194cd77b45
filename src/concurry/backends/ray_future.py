"""``RayFuture``: a concurry future over a Ray ``ObjectRef``; and how Ray's outcomes become ours.

A ``RayFuture`` is a real ``concurrent.futures.Future`` (a ``ConcurrentFuture``), so ``wait``,
``gather``, pools, callbacks and ``await`` treat it like any local future. How it learns its
outcome depends on who looks, because Ray's per-ref completion callback (``ObjectRef.future()``)
costs a call about a fifth of its time again:

- ``result()``/``exception()`` on a pending one ask Ray directly (``ray.get``), the quickest way
  to one result.
- ``wait``/``gather``/``as_completed`` on Ray futures alone check them in batches
  (``__concurry_poll__``: one ``ray.wait`` for many, then one ``ray.get`` for those finished).
- ``done()`` asks Ray (``ray.wait``) whether a pending one has finished, and settles it if so.
- Anything else that watches it (a done-callback, ``await``, ``concurrent.futures``'
  ``wait``/``as_completed``, a mixed ``wait``) makes it *watched*: Ray's callback then completes
  it (see ``settle`` for where user callbacks run). A pool's futures are watched from the start:
  the pool counts on hearing of each call's end.

Errors come back as the user's: a ``RayTaskError`` carrying the actor's ``CallFailed`` is
rebuilt as the exception the method raised (worker-side traceback attached as a note, as for
process workers); a dead actor (``RayActorError``) is ``WorkerCrashedError``; a cancelled task
is ``CancelledError``.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, PENDING
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
_DONE = (FINISHED, CANCELLED_AND_NOTIFIED, CANCELLED)
# seconds a batch check waits at most while a future's call is not sent yet (it waits its turn
# behind a pending local future): once sent, it is seen within this
_UNSENT_CHECK = 0.01


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
        self._watched = False  # Ray's callback completes it (see the module docstring)

    @classmethod
    def of(cls, ref: Any) -> RayFuture[Any]:
        """A future over ``ref`` (``wrap_future(object_ref)``), settled as a call's is."""
        return cls(ref)

    @property
    def object_ref(self) -> Any:
        """The Ray ``ObjectRef`` of this call's result (None until the call reached Ray)."""
        return self._ref

    # ---- watching: Ray's completion callback, registered when something needs it ----

    @property
    def _waiters(self) -> list:
        # ``concurrent.futures.wait``/``as_completed`` (and a mixed ``concurry.wait``) install
        # their waiters through this list, holding the future's lock: a pending future they
        # wait on must be watched. Ray's callback runs at once, in the registering thread, if
        # the call has just finished; here it would settle the future before the waiter is
        # appended, and the waiter would never hear of it. So it is registered from our
        # callback thread, where the settle waits for the lock, and so for the waiter.
        if not self._watched and self._state not in _DONE:
            self._watch(elsewhere=True)
        return self._waiter_list

    @_waiters.setter
    def _waiters(self, value: list) -> None:
        self._waiter_list = value

    def _watch(self, elsewhere: bool = False) -> None:
        """From now on Ray's callback completes this future (registered once its call is sent;
        ``elsewhere``: by our callback thread, not this one)."""
        with self._condition:
            if self._watched:
                return
            self._watched = True
            ref = self._ref
        if ref is None:
            return
        if elsewhere:
            _callbacks.run(self._register, ref)
        else:
            self._register(ref)

    def _bind(self, ref: Any, convert: Convert, at: tuple, watch: bool) -> None:
        """The call this future waited for has been sent as ``ref``; watch it if anyone does."""
        with self._condition:
            self._ref, self._convert, self._at = ref, convert, at
            watch = self._watched = watch or self._watched
        if watch:
            self._register(ref)

    def _register(self, ref: Any) -> None:
        at = self._at
        if at is None:
            ref.future().add_done_callback(functools.partial(settle, self, convert=self._convert))
        else:  # the worker hears of the call's end too
            ref.future().add_done_callback(functools.partial(at[0].finished, at[1], self, self._method))

    def add_done_callback(self, fn: Callable[[Any], object]) -> None:
        super().add_done_callback(fn)
        if not self._watched and self._state not in _DONE:
            self._watch()

    def done(self) -> bool:
        if self._state not in _DONE and self._ref is not None and ray.is_initialized():
            self.__concurry_poll__([self])  # finished at Ray: settled now (its callback may lag)
        return super().done()

    # ---- outcomes ----

    def result(self, timeout: float | None = None) -> T:
        if self._state not in _DONE:
            self._await_outcome(timeout)
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state not in _DONE:
            self._await_outcome(timeout)
        return super().exception(timeout)

    def _await_outcome(self, timeout: float | None) -> None:
        if self._ref is not None:
            self._fetch(timeout)
        else:  # not sent yet (it waits for its turn): Ray's callback settles it once it is
            self._watch()

    def _fetch(self, timeout: float | None) -> None:
        try:
            value = ray.get(self._ref, timeout=timeout)
        except GetTimeoutError:
            raise _WaitTimeout(f"future did not finish within {timeout} s") from None
        except Exception as exc:
            self._complete(None, exc)
        else:
            self._complete(value, None)

    def _complete(self, value: Any, ray_exc: BaseException | None) -> None:
        """Settle with Ray's outcome (errors made ours); the worker forgets the call."""
        if ray_exc is None:
            set_outcome(self, value, None)
        else:
            set_outcome(self, None, self._convert(ray_exc, "", self._method))
        at = self._at
        if at is not None:
            at[0].forget(at[1])

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
        if at is not None:
            at[0].forget(at[1])
        return True

    @staticmethod
    def __concurry_poll__(futures: list[RayFuture[Any]], timeout: float = 0) -> list[RayFuture[Any]]:
        """``wait``/``gather``'s batch check: one ``ray.wait`` for every pending future (for up
        to ``timeout`` seconds, until one has finished); those finished are settled here with one
        ``ray.get`` (unless their completion callback was first). Returns the done ones."""
        pending = {f._ref: f for f in futures if f._ref is not None and f._state not in _DONE}
        if timeout and any(f._ref is None and f._state not in _DONE for f in futures):
            timeout = min(timeout, _UNSENT_CHECK)  # a call not sent yet has no ref to wait on
        if pending:
            refs = list(pending)
            if timeout:
                ray.wait(refs, num_returns=1, timeout=timeout, fetch_local=False)
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
            settle_all([pending[ref] for ref in ready if pending[ref]._state not in _DONE])
        elif timeout:
            time.sleep(timeout)
        return [f for f in futures if f._state in _DONE]

    def __reduce__(self) -> Any:
        # Passed inside an argument (unwrap_futures=False, or nested in a container), it travels
        # as a future over the same ref; the other side asks Ray when it needs the value.
        return (_rebuilt, (self._ref,))


def settle_all(futures: list[RayFuture[Any]]) -> None:
    """Settle ``futures``, whose calls Ray has finished, with one ``ray.get`` (one per call
    costs a round trip each); if one of them failed, each gets its own outcome."""
    if not futures:
        return
    try:
        values = ray.get([f._ref for f in futures], timeout=0)
    except Exception:
        for future in futures:
            future._fetch(0)
    else:
        for future, value in zip(futures, values, strict=True):
            future._complete(value, None)


def _rebuilt(ref: Any) -> RayFuture[Any]:
    return RayFuture(ref)


def settle(future: cf.Future, source: cf.Future, convert: Convert, method: str = "the method") -> None:
    """Copy the outcome of Ray's finished ``source`` into ``future`` (errors made ours).

    Called on Ray's callback thread, which is also the thread that handles every Ray reply to
    this process: while it runs nothing of Ray's finishes here. A future with done-callbacks
    (the user's: they may wait for another Ray future, or just be slow) is therefore settled
    on a thread of ours; one without is settled at once (the common case, no thread hop)."""
    if future._state in _DONE:  # ``result()`` got it from Ray first (a set_result now would build an error)
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
    """Runs queued work (settles that run user callbacks, callback registrations) in order on
    one thread of ours, started when work arrives and ended when there is none (so no thread
    is left behind between bursts, or at exit)."""

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
