"""Pools: N workers of one class behind one handle with the same methods.

The hot path runs in the caller's thread: the balancer picks a worker, and if that worker's
backend holds fewer than ``max_queued_tasks`` unfinished calls (and nobody is waiting before
this call), the call goes straight to the backend's ``submit``. Otherwise the call gets a fresh
future at once and waits in that worker's own deque inside the library; a dispatcher thread
hands it to the backend when a slot frees. The caller never blocks.

There is no done callback per call: each backend counts its own unfinished calls
(``backend.unfinished``), which the cap check, the ``active`` algorithm and ``pool_stats()``
read. When calls wait, the dispatcher is woken by a done callback on one handed-over future,
chosen so that the backend is down to half its cap when it fires.

A process worker that dies is replaced in the background as soon as its backend reports the
death (``worker_died``); only the calls it held fail (with ``WorkerCrashedError``), the calls
waiting for it go to its successor. ``active`` pools also hear when a worker goes idle
(``worker_idle``) and move calls queued behind running ones to the idle workers
(``backend.withdraw()``), so the fast path stays a direct hand-over.

``stop()`` never waits for a thread it is running on (the pool's own: worker, reader,
dispatcher, replacer and stopper threads): from there it finishes in the background.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from .backends import Backend, backend_class
from .balancing import Balancer, make_balancer
from .constants import ExecutionMode, LoadBalancingAlgorithm
from .errors import WorkerCrashedError, WorkerStoppedError
from .futures import BaseFuture, ConcurrentFuture, force_cancel, remaining, set_outcome
from .on_demand import OnDemandCore, OnDemandPool
from .options import WorkerOptions
from .pool_members import OwnThreads, PoolHandle, PoolStop, pool_name, start_backends, stop_backends
from .pool_slots import RETRY_DELAY, STEAL_DELAY, Dispatcher, Slot
from .proxy import WorkerHandle, handle_class
from .thread_exit import join

_REPLACE_ATTEMPTS = 3
_NO_CAP = sys.maxsize


# ---- the pool ----


class PoolCore(PoolStop):
    """Everything a pool does, apart from the user-facing handle (which may be garbage-collected
    while the core finishes stopping)."""

    def __init__(self, cls: type, args: tuple, kwargs: dict, options: WorkerOptions):
        self.cls, self.args, self.kwargs, self.options = cls, args, kwargs, options
        self.name = pool_name(cls)
        cap = None if options.blocking else options.max_queued_tasks
        self.max_queued_tasks = cap
        self.cap = _NO_CAP if cap is None else cap
        # Waiting calls are handed over in batches: the dispatcher is woken once a backend is
        # down to half its cap, not at every finished call (one wake-up per call would cost
        # more than a small process call itself).
        self.low_water = self.cap // 2
        self.closed = False
        self.dispatcher = Dispatcher(self)
        self.slots: list[Slot] = []
        self.balancer: Balancer | None = None
        self._lock = threading.Lock()
        self._closing_lock = self._lock
        self._generation = itertools.count(1)
        self._replacers: list[threading.Thread] = []
        self._backends_stopping = False
        self._finished = threading.Event()
        self._rebalancing = False
        self.own = OwnThreads()
        # ``active`` keeps no call waiting behind a running one while a worker is idle: an idle
        # worker takes over calls that other workers hold and have not started (``worker_idle``).
        self.active = options.load_balancing is LoadBalancingAlgorithm.ACTIVE
        # Backends report idleness (used by ``active``) and deaths (thread workers never die).
        self.listens = self.active or options.mode is not ExecutionMode.THREAD

    # ---- start ----

    def new_backend(self, index: int, generation: int = 0) -> Backend:
        suffix = f"r{generation}" if generation else ""
        name = f"{self.name}.{index}{suffix}"
        backend = backend_class(self.options.mode)(self.cls, self.args, self.kwargs, self.options, name)
        if self.listens:
            backend.listener = self
        if self.active:  # calls queued in a busy child can be taken back for an idle worker
            backend.claims = True
        return backend

    def start(self) -> None:
        """Start every worker in parallel; on an ``__init__`` error stop the others and raise it."""
        backends = [self.new_backend(i) for i in range(self.options.max_workers)]
        started, error = start_backends(backends)
        if error is not None:
            self.closed = True
            stop_backends(started, 1.0, True)
            raise error
        self.slots = [Slot(i, b, self) for i, b in enumerate(backends)]
        self.balancer = make_balancer(self.options.load_balancing, self.slots)

    # ---- calls ----

    def stopped_error(self) -> WorkerStoppedError:
        return WorkerStoppedError(f"pool {self.name} is stopped; create a new one with .init()")

    def caller(self, name: str) -> Callable[..., BaseFuture]:
        """The fast path for one method (see the module docstring)."""
        core, slots, pick, cap, place = self, self.slots, self.balancer.pick, self.cap, self.place
        uncapped = self.max_queued_tasks is None

        def call_capped(*args: Any, **kwargs: Any) -> BaseFuture:
            if core.closed:
                raise core.stopped_error()
            slot = slots[pick()]
            with slot.lock:  # held across submit: the cap check and the hand-over are one step
                backend = slot.backend
                if not (slot.live and not slot.queue and backend.unfinished < cap):
                    direct = False
                else:
                    direct = True
                    slot.total += 1
                    try:
                        future = backend.submit(name, args, kwargs)
                    except BaseException as exc:
                        slot.total -= 1
                        error = exc
                    else:
                        slot.recent.append(weakref.ref(future))
                        return future
            if not direct:
                return place(slot, name, args, kwargs)
            return handle_failure(slot, backend, error, args, kwargs)

        def call_uncapped(*args: Any, **kwargs: Any) -> BaseFuture:
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
                return handle_failure(slot, backend, exc, args, kwargs)

        def handle_failure(
            slot: Slot, backend: Backend, error: BaseException, args: tuple, kwargs: dict
        ) -> BaseFuture:
            if not isinstance(error, (WorkerCrashedError, WorkerStoppedError)):
                raise error
            if core.closed:
                raise core.stopped_error() from None
            core.worker_failed(slot, backend)
            return place(slot, name, args, kwargs)

        return call_uncapped if uncapped else call_capped

    def place(self, slot: Slot, name: str, args: tuple, kwargs: dict) -> BaseFuture:
        """Slow path: the call gets a future now and waits in a worker's deque (a live worker's
        if the chosen one is being replaced) until the dispatcher hands it over."""
        if not slot.live:
            slot = self.live_slot(slot)
        future = ConcurrentFuture()
        with slot.lock:
            if slot.dead:
                set_outcome(future, None, WorkerCrashedError(f"every worker of pool {self.name} died"))
                return future
            slot.total += 1
            slot.queue.append((future, name, args, kwargs))
            first = len(slot.queue) == 1 and slot.live
        if first:
            self.arm(slot)
        return future

    def arm(self, slot: Slot) -> None:
        """Make sure the dispatcher looks at ``slot`` once its backend has room."""
        with slot.lock:
            if not slot.queue or not slot.live:
                return
            if slot.in_backend < self.cap:
                watch = None
            else:
                watch = slot.watch_target(self.low_water)
                if watch is None:  # the backend still counts calls that have just ended
                    self.dispatcher.wake(slot, RETRY_DELAY)
                    return
        if watch is None:
            slot.wake()
        else:
            watch.add_done_callback(slot.wake)

    def live_slot(self, avoid: Slot) -> Slot:
        """A running worker other than ``avoid``, else one being replaced, else ``avoid``."""
        replacing = None
        for slot in self.slots:
            if slot.live:
                return slot
            if replacing is None and not slot.dead:
                replacing = slot
        return replacing or avoid

    def hand_off(self, slot: Slot) -> None:
        """Move waiting calls of ``slot`` into its backend while it has room (dispatcher thread)."""
        failed: list[tuple[cf.Future, BaseException]] = []
        dead_backend = None
        with slot.lock:
            if not slot.live or self._backends_stopping:
                return
            queue, cap, backend, recent = slot.queue, self.cap, slot.backend, slot.recent
            while queue and backend.unfinished < cap:
                future, name, args, kwargs = queue[0]
                if future.done():  # cancelled while it waited
                    queue.popleft()
                    continue
                try:
                    backend.submit(name, args, kwargs, future)
                except (WorkerCrashedError, WorkerStoppedError):
                    dead_backend = backend  # the call stays first in line, for the replacement
                    break
                except Exception as exc:
                    failed.append((future, exc))
                else:
                    recent.append(weakref.ref(future))
                queue.popleft()
        for future, exc in failed:
            set_outcome(future, None, exc)
        if dead_backend is not None:
            if not self._backends_stopping:
                self.worker_failed(slot, dead_backend)
            return
        self.arm(slot)

    # ---- crashes ----

    def worker_failed(self, slot: Slot, backend: Backend) -> None:
        """``backend`` (the worker of ``slot``) died: start a replacement in the background."""
        with self._lock:
            with slot.lock:
                if slot.backend is not backend or not slot.live:
                    return
                slot.live = False
            if not self.closed:
                thread = self.own.start(self._replace, (slot, backend), f"concurry-pool-replace-{self.name}")
                self._replacers.append(thread)
                return
        # Stopping: no replacement; the calls that waited for this worker fail like its own.
        message = f"worker {backend.name} of pool {self.name} died while the pool was stopping"
        self._fail_waiting(slot, message)

    def _replace(self, slot: Slot, old: Backend) -> None:
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
                        slot.recent.clear()
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

    def _fail_waiting(self, slot: Slot, message: str) -> None:
        for future, *_ in slot.take_queue():
            set_outcome(future, None, WorkerCrashedError(message))

    # ---- what backends tell us (from their own threads) ----

    def worker_died(self, backend: Backend) -> None:
        """A worker died on its own: replace it now, not when a call is next routed to it."""
        for slot in self.slots:
            if slot.backend is backend:
                self.worker_failed(slot, backend)
                return

    def worker_idle(self, backend: Backend) -> None:
        """``active`` pools: ``backend`` has finished its last call. If other workers hold calls
        that have not started (queued behind a running call), the dispatcher re-balances
        shortly (``_rebalance``): those calls move to the workers still idle then.

        Calls are still handed to a worker when submitted (the fast path stays one ``put``);
        this runs once per idle transition, and costs one scan when nothing is to be moved.
        """
        if not self.active or self.closed or self._rebalancing:
            return
        for slot in self.slots:
            other = slot.backend
            # one call running and at least one behind it (a lone queued call starts at once)
            if other is not backend and slot.live and other.unfinished >= 2:
                self._rebalancing = True  # one re-balance at a time, for all idle workers
                self.dispatcher.wake(self._rebalance, STEAL_DELAY)
                return

    def _rebalance(self) -> None:
        """Move calls not started from busy workers to the workers idle now (dispatcher thread).

        Each idle worker gets a fair share (the calls queued anywhere over the number of
        workers), the oldest first, taken from the most loaded workers; what a busy worker
        gave back beyond that returns to it. Only what is needed moves, so calls do not bounce
        between workers in a burst, and queues end about equal.
        """
        self._rebalancing = False
        live = [slot for slot in self.slots if slot.live]
        idle = [slot for slot in live if slot.pending == 0]
        if self.closed or not idle:
            return
        busy = sorted(
            ((slot.backend.unfinished, slot) for slot in live if slot.backend.unfinished >= 2),
            key=lambda pair: -pair[0],
        )
        queued = sum(unfinished - 1 for unfinished, _ in busy)
        share = max(1, queued // len(live))
        need = share * len(idle)
        taken: list[tuple] = []
        for _, slot in busy:
            if len(taken) >= need:
                break
            items = slot.backend.withdraw()
            keep = need - len(taken)
            taken += items[:keep]
            with slot.lock:
                slot.total -= len(items)
            for item in items[keep:]:
                self._give(slot, item)
            # Its backend has room now, and the call its dispatcher wake-up was watching for may
            # be among those taken back (and be waiting in its own queue): look at it again.
            self.dispatcher.wake(slot)
        for i, item in enumerate(taken):  # round the idle workers, the oldest calls first
            self._give(idle[i % len(idle)], item)

    def _give(self, slot: Slot, item: tuple) -> None:
        """Hand a taken-back call (its future untouched) to ``slot``: to its backend if it has
        room, else to its waiting queue; cancelled if the pool's workers are being released."""
        future, name, args, kwargs = item
        error: BaseException | None = None
        first = cancel = False
        with slot.lock:
            slot.total += 1
            if slot.live and not slot.queue and not self._backends_stopping and (
                slot.backend.unfinished < self.cap
            ):
                try:
                    slot.backend.submit(name, args, kwargs, future)
                except (WorkerCrashedError, WorkerStoppedError):
                    pass
                except Exception as exc:
                    error = exc
                else:
                    slot.recent.append(weakref.ref(future))
                    return
            if error is None:
                if self._backends_stopping:
                    cancel = True
                else:
                    slot.queue.append(item)
                    first = len(slot.queue) == 1 and slot.live
        if error is not None:
            set_outcome(future, None, error)
        elif cancel:
            force_cancel(future)
        elif first:
            self.arm(slot)

    # ---- stop ----

    def on_own_thread(self) -> bool:
        """Is the current thread one this pool runs user code on or waits for while stopping?"""
        current = threading.current_thread()
        return current in self.own or any(slot.backend.runs_on(current) for slot in self.slots)

    def _release_now(self) -> None:
        self._shutdown(0.0, True)

    def _cancel_unstarted(self) -> None:
        """Cancel every call not started: those waiting in our queues, and those the backends
        hold (each backend's stop begins here, cancelling its own; ``_shutdown`` waits for it)."""
        for slot in self.slots:
            for future, *_ in slot.take_queue():
                future.cancel()
            try:
                slot.backend.stop(None, True, False)
            except Exception:
                pass

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
            join(thread, remaining(deadline))
        for slot in self.slots:  # not handed over by the deadline: cancelled, never pending
            for future, *_ in slot.take_queue():
                force_cancel(future)
        with self._lock:
            self._backends_stopping = True
            backends = [slot.backend for slot in self.slots]
        stop_backends(backends, remaining(deadline), cancel_futures, self.own)
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
                waiting, in_backend = len(slot.queue), slot.in_backend
                workers.append(
                    {
                        "worker": slot.backend.name,
                        "state": slot.state(),
                        "unfinished": in_backend + waiting,
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


class WorkerPool(PoolHandle):
    """A pool of workers behind one handle with the worker class's methods.

    Besides the user's methods: ``stop()``, the context manager, and ``pool_stats()``.
    """

    def __repr__(self) -> str:
        core = self.__dict__.get("_engine")
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
        return handle_class(cls, OnDemandPool)(cls, OnDemandCore(cls, args, kwargs, options), options)
    core = PoolCore(cls, args, kwargs, options)
    core.start()
    return handle_class(cls, WorkerPool)(cls, core, options)
