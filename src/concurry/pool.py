"""Pools: N workers of one class behind one handle with the same methods (SPEC §4).

The hot path runs in the caller's thread: the balancer picks a worker, and if that worker's
backend holds fewer than ``max_queued_tasks`` unfinished calls (and nobody is waiting before
this call), the call goes straight to the backend's ``submit``. Otherwise the call gets a fresh
future at once and waits in that worker's own deque inside the library; a dispatcher thread
hands it to the backend when a slot frees. The caller never blocks.

Each worker's counters (``pending``: assigned and unfinished; ``inflight``: held by the
backend; ``total``: ever assigned) are kept under the worker's own lock and decremented by the
future's done callback. A process worker that dies is replaced in the background; only the
calls it held fail (with ``WorkerCrashedError``), the calls waiting for it go to its successor.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import itertools
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .backends import Backend, backend_class
from .balancing import Balancer, make_balancer
from .constants import LoadBalancingAlgorithm
from .errors import WorkerCrashedError, WorkerStoppedError
from .futures import BaseFuture, ConcurrentFuture, force_cancel, set_outcome
from .options import WorkerOptions
from .proxy import WorkerHandle, handle_class

_pool_counter = itertools.count(1)
_REPLACE_ATTEMPTS = 3
_NO_CAP = sys.maxsize


def pool_name(cls: type) -> str:
    return f"{cls.__name__}-pool#{next(_pool_counter)}"


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


# ---- starting and stopping many backends at once ----


def start_backends(backends: list[Backend]) -> tuple[list[Backend], BaseException | None]:
    """Start all backends in parallel; return the ones that started and the first ``__init__`` error.

    Backends that can (process) are launched all at once, then waited on; others are started
    from helper threads so that slow ``__init__``s overlap.
    """
    errors: list[BaseException | None] = [None] * len(backends)
    started: list[bool] = [False] * len(backends)
    if all(hasattr(b, "launch") and hasattr(b, "wait_ready") for b in backends):
        launched = []
        for i, backend in enumerate(backends):
            try:
                backend.launch()
            except BaseException as exc:
                errors[i] = exc
                break
            launched.append(i)
        for i in launched:
            try:
                backends[i].wait_ready()
                started[i] = True
            except BaseException as exc:
                errors[i] = exc
    else:

        def start(i: int) -> None:
            try:
                backends[i].start()
                started[i] = True
            except BaseException as exc:
                errors[i] = exc

        helpers = [threading.Thread(target=start, args=(i,), daemon=True) for i in range(1, len(backends))]
        for thread in helpers:
            thread.start()
        start(0)
        for thread in helpers:
            thread.join()
    ok = [b for b, s in zip(backends, started, strict=True) if s]
    return ok, next((e for e in errors if e is not None), None)


def stop_backends(backends: list[Backend], timeout: float | None, cancel_futures: bool) -> None:
    """Stop backends in parallel, each with the same deadline; always returns."""

    def stop(backend: Backend) -> None:
        try:
            backend.stop(timeout, cancel_futures, True)
        except Exception:
            pass

    if len(backends) == 1:
        stop(backends[0])
        return
    helpers = []
    for backend in backends:
        try:
            thread = threading.Thread(target=stop, args=(backend,), daemon=True, name="concurry-pool-stop")
            thread.start()
            helpers.append(thread)
        except RuntimeError:  # interpreter shutting down: no new threads
            stop(backend)
    for thread in helpers:
        thread.join()


# ---- one worker of a pool ----


class _Slot:
    """One worker position: its current backend, its counters and its waiting calls."""

    __slots__ = (  # noqa: RUF023 - grouped by meaning
        "index", "backend", "live", "dead", "pending", "inflight", "total", "restarts",
        "queue", "lock", "direct_done", "queued_done", "inflight_done",
    )

    def __init__(self, index: int, backend: Backend, core: PoolCore):
        self.index = index
        self.backend = backend
        self.live = True  # False while a replacement starts, or for good once ``dead``
        self.dead = False
        self.pending = 0  # assigned and not finished (in the backend or waiting in ``queue``)
        self.inflight = 0  # handed to the backend and not finished
        self.total = 0
        self.restarts = 0
        self.queue: collections.deque = collections.deque()
        self.lock = threading.Lock()
        self._make_callbacks(core)

    def _make_callbacks(self, core: PoolCore) -> None:
        slot, lock, wake, low = self, self.lock, core.dispatcher.wake, core.low_water

        def direct_done(future: cf.Future) -> None:
            with lock:
                slot.pending -= 1
                slot.inflight -= 1
                refill = slot.queue and slot.live and slot.inflight <= low
            if refill:
                wake(slot)
            if future._exception is not None and isinstance(future._exception, WorkerCrashedError):
                core.check_crash(slot)

        def queued_done(future: cf.Future) -> None:
            with lock:
                slot.pending -= 1

        def inflight_done(future: cf.Future) -> None:
            with lock:
                slot.inflight -= 1
                refill = slot.queue and slot.live and slot.inflight <= low
            if refill:
                wake(slot)
            if future._exception is not None and isinstance(future._exception, WorkerCrashedError):
                core.check_crash(slot)

        self.direct_done, self.queued_done, self.inflight_done = direct_done, queued_done, inflight_done

    def take_queue(self) -> list:
        with self.lock:
            items = list(self.queue)
            self.queue.clear()
        return items

    def state(self) -> str:
        if self.dead:
            return "dead"
        if not self.live:
            return "replacing"
        if getattr(self.backend, "crashed", False):
            return "crashed"
        return "stopped" if self.backend.stopped else "running"


class _Dispatcher:
    """Hands waiting calls to backends as slots free. One thread per pool, started on first
    need; the caller never waits for it."""

    def __init__(self, core: PoolCore):
        self._core = core
        self._cond = threading.Condition(threading.Lock())
        self._ready: collections.deque = collections.deque()
        self._thread: threading.Thread | None = None
        self._closed = False

    def wake(self, slot: _Slot) -> None:
        with self._cond:
            if self._closed:
                return
            self._ready.append(slot)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"concurry-pool-dispatch-{self._core.name}", daemon=True
                )
                self._thread.start()
            else:
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        hand_off = self._core.hand_off
        while True:
            with self._cond:
                while not self._ready and not self._closed:
                    self._cond.wait()
                if not self._ready:
                    return
                slot = self._ready.popleft()
            try:
                hand_off(slot)
            except Exception:  # never let the dispatcher die; the stop sweep resolves leftovers
                pass


# ---- the pool ----


class PoolCore:
    """Everything a pool does, apart from the user-facing handle (which may be garbage-collected
    while the core finishes stopping)."""

    def __init__(self, cls: type, args: tuple, kwargs: dict, options: WorkerOptions):
        self.cls, self.args, self.kwargs, self.options = cls, args, kwargs, options
        self.name = pool_name(cls)
        cap = None if options.blocking else options.max_queued_tasks
        self.max_queued_tasks = cap
        self.cap = _NO_CAP if cap is None else cap
        # Waiting calls are handed over in batches: the dispatcher is woken once a backend is
        # down to half its cap, not at every finished call (one wake-up per call costs more
        # than the call itself for small process calls).
        self.low_water = self.cap // 2
        self.lean = False  # set by start(): see _lean_caller
        self.closed = False
        self.dispatcher = _Dispatcher(self)
        self.slots: list[_Slot] = []
        self.balancer: Balancer | None = None
        self._lock = threading.Lock()
        self._generation = itertools.count(1)
        self._replacers: list[threading.Thread] = []
        self._backends_stopping = False
        self._finished = threading.Event()

    # ---- start ----

    def new_backend(self, index: int, generation: int = 0) -> Backend:
        suffix = f"r{generation}" if generation else ""
        name = f"{self.name}.{index}{suffix}"
        return backend_class(self.options.mode)(self.cls, self.args, self.kwargs, self.options, name)

    def start(self) -> None:
        """Start every worker in parallel; on an ``__init__`` error stop the others and raise it."""
        backends = [self.new_backend(i) for i in range(self.options.max_workers)]
        started, error = start_backends(backends)
        if error is not None:
            self.closed = True
            stop_backends(started, 1.0, True)
            raise error
        self.slots = [_Slot(i, b, self) for i, b in enumerate(backends)]
        self.lean = (
            self.max_queued_tasks is None
            and self.options.load_balancing is not LoadBalancingAlgorithm.ACTIVE
            and not any(hasattr(b, "crashed") for b in backends)
        )
        self.balancer = make_balancer(self.options.load_balancing, self.slots)

    # ---- calls ----

    def stopped_error(self) -> WorkerStoppedError:
        return WorkerStoppedError(f"pool {self.name} is stopped; create a new one with .init()")

    def caller(self, name: str) -> Callable[..., BaseFuture]:
        """The fast path for one method (see the module docstring)."""
        if self.lean:
            return self._lean_caller(name)
        core, slots, pick, cap, place = self, self.slots, self.balancer.pick, self.cap, self.place

        def call(*args: Any, **kwargs: Any) -> BaseFuture:
            if core.closed:
                raise core.stopped_error()
            slot = slots[pick()]
            with slot.lock:
                direct = slot.live and slot.inflight < cap and not slot.queue
                if direct:
                    slot.pending += 1
                    slot.inflight += 1
                    slot.total += 1
                    backend = slot.backend
            if not direct:
                return place(slot, name, args, kwargs)
            try:
                future = backend.submit(name, args, kwargs)
            except BaseException as exc:
                with slot.lock:
                    slot.pending -= 1
                    slot.inflight -= 1
                    slot.total -= 1
                if not isinstance(exc, (WorkerCrashedError, WorkerStoppedError)):
                    raise
                if core.closed:
                    raise core.stopped_error() from None
                core.worker_failed(slot, backend)
                return place(slot, name, args, kwargs)
            future.add_done_callback(slot.direct_done)
            return future

        return call

    def _lean_caller(self, name: str) -> Callable[..., BaseFuture]:
        """No cap, no ``active`` balancing, a backend that cannot crash: nothing needs to know
        when a call finishes, so no done callback (it would cost a fifth of a thread call).
        Statistics then read the backend's own ``unfinished`` count."""
        core, slots, pick, place = self, self.slots, self.balancer.pick, self.place

        def call(*args: Any, **kwargs: Any) -> BaseFuture:
            if core.closed:
                raise core.stopped_error()
            slot = slots[pick()]
            with slot.lock:
                direct = slot.live and not slot.queue
                if direct:
                    slot.total += 1
                    backend = slot.backend
            if not direct:
                return place(slot, name, args, kwargs)
            try:
                return backend.submit(name, args, kwargs)
            except BaseException as exc:
                with slot.lock:
                    slot.total -= 1
                if isinstance(exc, WorkerStoppedError):
                    raise core.stopped_error() from None
                raise

        return call

    def place(self, slot: _Slot, name: str, args: tuple, kwargs: dict) -> BaseFuture:
        """Slow path: the call waits in a worker's deque (a live one if the chosen one is being
        replaced) and the dispatcher is woken if that worker has room."""
        if not slot.live:
            slot = self.live_slot(slot)
        future = ConcurrentFuture()
        with slot.lock:
            if slot.dead:
                set_outcome(future, None, WorkerCrashedError(f"every worker of pool {self.name} died"))
                return future
            slot.pending += 1
            slot.total += 1
            slot.queue.append((future, name, args, kwargs))
            room = slot.live and slot.inflight < self.cap
        future.add_done_callback(slot.queued_done)
        if room:
            self.dispatcher.wake(slot)
        return future

    def live_slot(self, avoid: _Slot) -> _Slot:
        """A running worker other than ``avoid``, else one being replaced, else ``avoid``."""
        replacing = None
        for slot in self.slots:
            if slot.live:
                return slot
            if replacing is None and not slot.dead:
                replacing = slot
        return replacing or avoid

    def hand_off(self, slot: _Slot) -> None:
        """Move waiting calls of ``slot`` into its backend while it has room (dispatcher thread)."""
        batch = []
        with slot.lock:
            if not slot.live:
                return
            queue, cap = slot.queue, self.cap
            while queue and slot.inflight < cap:
                item = queue.popleft()
                if item[0].done():  # cancelled while it waited
                    continue
                slot.inflight += 1
                batch.append(item)
            backend = slot.backend
        for i, (future, name, args, kwargs) in enumerate(batch):
            try:
                backend.submit(name, args, kwargs, future)
            except (WorkerCrashedError, WorkerStoppedError):
                rest = batch[i:]
                with slot.lock:
                    slot.inflight -= len(rest)
                    if not self._backends_stopping:
                        slot.queue.extendleft(reversed(rest))
                        rest = []
                for item in rest:  # the pool is stopping: these never started
                    force_cancel(item[0])
                if not self._backends_stopping:
                    self.worker_failed(slot, backend)
                return
            except Exception as exc:
                with slot.lock:
                    slot.inflight -= 1
                set_outcome(future, None, exc)
                continue
            future.add_done_callback(slot.inflight_done)

    # ---- crashes ----

    def check_crash(self, slot: _Slot) -> None:
        """A call failed with ``WorkerCrashedError``: replace the worker if its backend died."""
        backend = slot.backend
        if getattr(backend, "crashed", False):
            self.worker_failed(slot, backend)

    def worker_failed(self, slot: _Slot, backend: Backend) -> None:
        """``backend`` (the worker of ``slot``) died: start a replacement in the background."""
        with self._lock:
            with slot.lock:
                if slot.backend is not backend or not slot.live:
                    return
                slot.live = False
            if not self.closed:
                thread = threading.Thread(
                    target=self._replace, args=(slot, backend), daemon=True,
                    name=f"concurry-pool-replace-{self.name}",
                )
                self._replacers.append(thread)
                thread.start()
                return
        # Stopping: no replacement; the calls that waited for this worker fail like its own.
        message = f"worker {backend.name} of pool {self.name} died while the pool was stopping"
        self._fail_waiting(slot, message)

    def _replace(self, slot: _Slot, old: Backend) -> None:
        try:
            old.stop(0.0, True, False)
        except Exception:
            pass
        error: BaseException | None = None
        for _ in range(_REPLACE_ATTEMPTS):
            if self.closed:
                break
            new = self.new_backend(slot.index, next(self._generation))
            try:
                new.start()
            except BaseException as exc:
                error = exc
                continue
            with self._lock:
                if not self._backends_stopping:
                    with slot.lock:
                        slot.backend = new
                        slot.live = True
                        slot.restarts += 1
                    new = None
            if new is not None:  # the pool stopped its workers while this one started
                new.stop(0.0, True, True)
                break
            self.dispatcher.wake(slot)
            return
        with slot.lock:
            slot.dead = not self.closed
        reason = f": {type(error).__name__}: {error}" if error is not None else ""
        self._fail_waiting(slot, f"worker {old.name} of pool {self.name} died and was not replaced{reason}")

    def _fail_waiting(self, slot: _Slot, message: str) -> None:
        for future, *_ in slot.take_queue():
            set_outcome(future, None, WorkerCrashedError(message))

    # ---- stop ----

    def stop(self, timeout: float | None, cancel_futures: bool, wait: bool) -> None:
        with self._lock:
            first = not self.closed
            self.closed = True
        if not first:
            if wait:
                self._finished.wait(timeout)
            return
        if wait:
            self._shutdown(timeout, cancel_futures)
            return
        try:
            threading.Thread(
                target=self._shutdown, args=(timeout, cancel_futures), daemon=True,
                name=f"concurry-pool-stop-{self.name}",
            ).start()
        except RuntimeError:  # interpreter shutting down: cancel what waits, release the workers now
            self._shutdown(0.0, True)

    def _shutdown(self, timeout: float | None, cancel_futures: bool) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        if cancel_futures:
            for slot in self.slots:
                for future, *_ in slot.take_queue():
                    future.cancel()
        else:  # calls waiting in our deques still run; wait for them until the deadline
            waiting = [item[0] for slot in self.slots for item in list(slot.queue)]
            if waiting:
                cf.wait(waiting, timeout=remaining(deadline))
        for thread in list(self._replacers):
            thread.join(remaining(deadline))
        for slot in self.slots:  # not handed over by the deadline: cancelled, never pending
            for future, *_ in slot.take_queue():
                force_cancel(future)
        with self._lock:
            self._backends_stopping = True
            backends = [slot.backend for slot in self.slots]
        stop_backends(backends, remaining(deadline), cancel_futures)
        for slot in self.slots:
            for future, *_ in slot.take_queue():
                force_cancel(future)
        self.dispatcher.close()
        self._finished.set()

    # ---- statistics ----

    def stats(self) -> dict[str, Any]:
        workers = []
        for slot in self.slots:
            with slot.lock:
                waiting, in_backend, pending = len(slot.queue), slot.inflight, slot.pending
                if self.lean:  # calls sent directly are counted by the backend alone
                    in_backend = getattr(slot.backend, "unfinished", in_backend)
                    pending = in_backend + waiting
                workers.append(
                    {
                        "worker": slot.backend.name,
                        "state": slot.state(),
                        "unfinished": pending,
                        "in_backend": in_backend,
                        "waiting": waiting,
                        "total": slot.total,
                        "restarts": slot.restarts,
                    }
                )
        return {
            "pool": self.name,
            "mode": self.options.mode.value,
            "load_balancing": self.options.load_balancing.value,
            "max_queued_tasks": self.max_queued_tasks,
            "on_demand": False,
            "stopped": self.closed,
            "unfinished": sum(w["unfinished"] for w in workers),
            "total": sum(w["total"] for w in workers),
            "workers": workers,
        }


class WorkerPool(WorkerHandle):
    """A pool of workers behind one handle with the worker class's methods (SPEC §4).

    Besides the user's methods: ``stop()``, the context manager, and ``pool_stats()``.
    """

    def __init__(self, cls: type, core: PoolCore):
        self._core = core
        self._options = core.options
        self._callers: dict[str, Callable[..., BaseFuture]] = {}
        self._cls = cls

    def _caller(self, name: str) -> Callable[..., BaseFuture]:
        try:
            return self._callers[name]
        except KeyError:
            caller = self._callers[name] = self._core.caller(name)
            return caller

    def _stop(self, timeout: float | None, cancel_futures: bool, wait: bool) -> None:
        core = self.__dict__.get("_core")
        if core is not None:
            core.stop(timeout, cancel_futures, wait)

    def pool_stats(self) -> dict[str, Any]:
        """A snapshot for debugging balance: per worker its state, ``unfinished`` calls (running,
        held by its backend or waiting in the library's queue), ``in_backend``, ``waiting``,
        ``total`` calls assigned and ``restarts``; plus the pool's algorithm and totals."""
        return self._core.stats()

    @property
    def mode(self) -> str:
        return self._options.mode.value

    def __repr__(self) -> str:
        core = self.__dict__.get("_core")
        if core is None:
            return "<worker pool (not started)>"
        state = "stopped" if core.closed else "running"
        return (
            f"<{self._options.mode.value} pool {core.name} of {len(core.slots)} workers, "
            f"{self._options.load_balancing.value} ({state})>"
        )


def create_pool(cls: type, args: tuple, kwargs: dict, options: WorkerOptions) -> WorkerHandle:
    """Start a pool (or an on-demand pool) and return its handle; raises the first ``__init__`` error."""
    if options.on_demand:
        from .on_demand import OnDemandPool

        return handle_class(cls, OnDemandPool)(cls, args, kwargs, options)
    core = PoolCore(cls, args, kwargs, options)
    core.start()
    return handle_class(cls, WorkerPool)(cls, core)
