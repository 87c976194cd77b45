"""``thread`` mode: one dedicated thread per worker, fed by one ``SimpleQueue``.

A call is one tuple on the queue; the thread takes it, runs it through the runtime and resolves
the future. No locks on the hot path beyond the queue's and the future's own.

``unfinished`` is not ``qsize()`` plus the running call: ``SimpleQueue.qsize()`` is documented
as approximate, and from Python 3.13 ``put()`` hands an item straight to a thread blocked in
``get()``, so a call can be out of the queue long before the worker thread runs and marks it
current. Each call instead adds one entry to ``_count`` before it is queued, and one entry is
removed once the call is finished, skipped, cancelled unstarted or withdrawn; ``deque`` appends
and pops are atomic, so the count never misses a call in flight.
"""

from __future__ import annotations

import collections
import queue
import threading

from ..futures import BaseFuture, ConcurrentFuture, force_cancel, set_outcome
from ..runtime import CallOptions, Runtime
from ..thread_exit import join
from .base import Backend

_SHUTDOWN = None  # queue sentinel


class ThreadBackend(Backend):
    """A worker thread that owns the instance and runs calls in submission order."""

    thread_name_prefix = "concurry-thread"

    def start(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        # One entry per call queued and not finished (see the module docstring). Every path that
        # takes a call off the queue without running it (skip, cancel, withdraw) pops one too.
        self._count: collections.deque = collections.deque()
        self._finished = False  # set by the worker thread once it will take no more items
        self._current: ConcurrentFuture | None = None
        self._ready = threading.Event()
        self._init_error: BaseException | None = None
        self._runtime: Runtime | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"{self.thread_name_prefix}-{self.name}", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._init_error is not None:
            self._stopped = True
            self._thread.join()
            raise self._init_error

    # ---- caller side ----
    # ``submit`` is the one path: pools call it directly, and a single worker's ``caller(name)``
    # (the default in ``Backend``) is a closure over it.

    def submit(
        self, name: str, args: tuple, kwargs: dict, future: ConcurrentFuture | None = None
    ) -> BaseFuture:
        if self._stopped:
            raise self.stopped_error()
        if future is None:
            future = ConcurrentFuture()
        self._count.append(None)  # before the put: the call is counted before it can finish
        self._queue.put((future, name, args, kwargs))
        if self._finished:  # the thread exited between our check and our put: don't strand it
            self._cancel_queued()
        return future

    def stop(self, timeout: float | None = None, cancel_futures: bool = False, wait: bool = True) -> None:
        if self._begin_stop():
            if cancel_futures:
                self._cancel_queued()
            self._queue.put(_SHUTDOWN)
            if self._runtime is not None:
                self._runtime.request_stop()  # a call in a back-off ends now, with its last failure
        if wait and threading.current_thread() is not self._thread:
            self._await_exit(timeout)  # also when stop() was begun earlier: the deadline holds

    def _await_exit(self, timeout: float | None) -> None:
        if not join(self._thread, timeout):
            # The running call ignored the deadline, or the interpreter is exiting: cancel
            # everything it still holds up. The daemon thread exits once that call returns.
            self._cancel_queued()
            current = self._current
            if current is not None:
                force_cancel(current)
            self._queue.put(_SHUTDOWN)

    def runs_on(self, thread: threading.Thread) -> bool:
        return thread is self._thread

    @property
    def unfinished(self) -> int:
        """Calls submitted and not yet finished (queued or running); read by pool statistics."""
        return len(self._count)

    def withdraw(self) -> list[tuple[ConcurrentFuture, str, tuple, dict]]:
        """Take back the queued calls: each item is taken either by the worker thread or by us,
        never both, so a withdrawn call never starts here. The stop sentinel goes back."""
        items: list = []
        get = self._queue.get_nowait
        shutdown = False
        while True:
            try:
                item = get()
            except queue.Empty:
                break
            if item is _SHUTDOWN:
                shutdown = True
            else:
                self._count.pop()
                items.append(item)
        if shutdown:
            self._queue.put(_SHUTDOWN)
        return items

    def _cancel_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _SHUTDOWN:
                self._count.pop()
                force_cancel(item[0])

    # ---- worker thread ----

    def _run(self) -> None:
        try:
            runtime = Runtime(self.cls, self.args, self.kwargs, CallOptions.of(self.options))
        except BaseException as exc:
            self._init_error = exc
            self._finished = True
            self._ready.set()
            return
        self._runtime = runtime
        self._ready.set()
        self.args = self.kwargs = None  # the instance owns them now
        get, count, done = self._queue.get, self._count, self._count.pop
        invoke = runtime.invoke
        listener = self.listener  # set before start(); None outside pools that want to know
        try:
            while True:
                item = get()
                if item is _SHUTDOWN:
                    break
                future, name, args, kwargs = item
                try:
                    runs = future.set_running_or_notify_cancel()
                except RuntimeError:  # force-cancelled by a timed-out stop
                    runs = False
                if runs:
                    self._current = future
                    try:
                        result = invoke(name, args, kwargs)
                    except BaseException as exc:
                        set_outcome(future, None, exc)
                    else:
                        set_outcome(future, result, None)
                        del result  # the caller alone decides how long a result lives
                    self._current = None
                done()
                del item, future, args, kwargs
                if listener is not None and not count:
                    listener.worker_idle(self)  # a pool may hand us calls waiting elsewhere
        finally:
            try:
                runtime.close()
            finally:
                self._finished = True
                self._cancel_queued()
