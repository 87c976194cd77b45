"""On-demand pools: a fresh worker for each call, stopped when the call finishes.

No worker exists before the first call. The pool has ``max_workers`` worker *positions*; a call
either starts a *runner* thread at once on a free position, the one chosen among the free
positions by ``load_balancing_on_demand`` (``round_robin``: the next in turn; ``total``: the
one given the fewest calls so far; ``active``: any idle one, in turn; ``random``), or, if every
position is busy, waits in the pool's deque. A runner creates a worker, runs one call on it,
stops it (waiting until its thread or process is gone), then takes the next waiting call on the
same position. So at most ``max_workers`` workers are ever alive, a call waits only while that
many exist, and the caller never waits: every call gets its future immediately.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .backends import backend_class
from .balancing import make_balancer
from .constants import ExecutionMode
from .errors import WorkerStoppedError
from .futures import BaseFuture, ConcurrentFuture, force_cancel, remaining, set_outcome
from .options import WorkerOptions
from .pool_members import OwnThreads, PoolHandle, PoolStop, pool_name

# After a stop's deadline, runners get this long to release the workers they still hold.
_RELEASE_GRACE = 5.0


def on_demand_limit(options: WorkerOptions) -> int | None:
    """``max_workers`` for an on-demand pool: 0 means ``cpu_count() - 1`` (at least 1) for local
    modes and no cap (``None``) for ray."""
    if options.max_workers > 0:
        return options.max_workers
    if options.mode is ExecutionMode.RAY:
        return None
    return max(1, (os.cpu_count() or 2) - 1)


class _Position:
    """One worker position of an on-demand pool: busy while a runner holds it."""

    __slots__ = ("busy", "created", "index", "total")

    def __init__(self, index: int):
        self.index = index
        self.busy = False
        self.total = 0  # calls run (or being run) on this position
        self.created = 0  # workers created here so far

    @property
    def pending(self) -> int:  # what the ``active`` algorithm reads
        return int(self.busy)


class OnDemandCore(PoolStop):
    """The state of an on-demand pool (kept apart from the handle so the handle can be
    garbage-collected while calls finish)."""

    def __init__(self, cls: type, args: tuple, kwargs: dict, options: WorkerOptions):
        self.cls, self.args, self.kwargs, self.options = cls, args, kwargs, options
        self.name = pool_name(cls)
        self.limit = on_demand_limit(options)
        self.closed = False
        self._cond = threading.Condition(threading.Lock())
        self._closing_lock = self._cond
        self._waiting: collections.deque = collections.deque()
        self._running: set[cf.Future] = set()  # calls a runner has taken (worker starting or running)
        self._backends: set = set()  # the workers the runners hold now
        self._runners = 0  # busy positions
        self._total = 0
        self._workers_created = 0
        # No cap (ray): positions are added as calls need them, and a call never waits.
        self._positions = [_Position(i) for i in range(self.limit or 0)]
        self._balancer = make_balancer(options.load_balancing, self._positions)
        self._finished = threading.Event()
        self.own = OwnThreads()  # runners and stoppers

    def stopped_error(self) -> WorkerStoppedError:
        return WorkerStoppedError(f"pool {self.name} is stopped; create a new one with .init()")

    # ---- calls ----

    def caller(self, name: str) -> Callable[..., BaseFuture]:
        def call(*args: Any, **kwargs: Any) -> BaseFuture:
            return self.submit(name, args, kwargs)

        return call

    def submit(self, name: str, args: tuple, kwargs: dict) -> BaseFuture:
        future = ConcurrentFuture()
        item = (future, name, args, kwargs)
        with self._cond:
            if self.closed:
                raise self.stopped_error()
            self._total += 1
            position = self._free_position()
            if position is None:
                self._waiting.append(item)
            else:
                position.busy = True
                position.total += 1
                self._runners += 1
        if position is not None:
            try:
                self.own.start(self._run, (position, item), f"concurry-ondemand-{self.name}")
            except BaseException as exc:
                self._release(position)
                set_outcome(future, None, exc)
        return future

    def _free_position(self) -> _Position | None:
        """The position the algorithm picks among the free ones; None if all are busy."""
        positions = self._positions
        free = [p.index for p in positions if not p.busy]
        if free:
            return positions[self._balancer.pick_from(free)]
        if self.limit is None:
            positions.append(_Position(len(positions)))
            return positions[-1]
        return None

    def _release(self, position: _Position) -> None:
        with self._cond:
            position.busy = False
            self._runners -= 1
            self._cond.notify_all()

    def _run(self, position: _Position, item: tuple | None) -> None:
        """A runner: one call per fresh worker on ``position``, until no call waits."""
        while item is not None:
            try:
                self._run_one(position, *item)
            except BaseException as exc:  # never strand a caller
                set_outcome(item[0], None, exc)
            with self._cond:
                if self._waiting:
                    item = self._waiting.popleft()
                    position.total += 1
                else:
                    item = None
                    position.busy = False
                    self._runners -= 1
                    self._cond.notify_all()

    def _run_one(
        self, position: _Position, future: ConcurrentFuture, name: str, args: tuple, kwargs: dict
    ) -> None:
        with self._cond:
            if future.done():  # cancelled while it waited
                return
            self._running.add(future)
            self._workers_created += 1
            position.created += 1
        backend = backend_class(self.options.mode)(
            self.cls, self.args, self.kwargs, self.options, f"{self.name}.{position.index}.{position.created}"
        )
        with self._cond:
            self._backends.add(backend)
        try:
            try:
                backend.start()
            except BaseException as exc:  # the class's __init__ failed: this call fails with it
                set_outcome(future, None, exc)
                return
            if not future.done():
                try:
                    backend.submit(name, args, kwargs, future)
                except BaseException as exc:
                    set_outcome(future, None, exc)
            cf.wait([future])
        finally:
            # The call is over (or was cancelled at the stop deadline): release the worker and
            # wait until its thread or process is gone, so at most ``limit`` ever exist.
            timeout = 0.0 if future.cancelled() else self.options.stop_timeout
            try:
                backend.stop(timeout, True, True)
            except Exception:
                pass
            with self._cond:
                self._running.discard(future)
                self._backends.discard(backend)

    # ---- stop ----

    def on_own_thread(self) -> bool:
        """Is the current thread a runner, a stopper, or a thread of a worker we hold now?"""
        current = threading.current_thread()
        if current in self.own:
            return True
        with self._cond:
            backends = list(self._backends)
        return any(backend.runs_on(current) for backend in backends)

    def _release_now(self) -> None:
        self._shutdown_at_exit()

    def _cancel_unstarted(self) -> None:
        """Cancel the calls waiting for a runner, and those whose worker is still starting
        (``cancel()`` refuses the running ones)."""
        with self._cond:
            items = [item[0] for item in self._waiting]
            self._waiting.clear()
            taken = list(self._running)
        for future in items:
            future.cancel()
        for future in taken:
            future.cancel()

    def _shutdown_at_exit(self) -> None:
        with self._cond:
            leftovers = [item[0] for item in self._waiting] + list(self._running)
            self._waiting.clear()
            backends = list(self._backends)
        for future in leftovers:
            force_cancel(future)
        for backend in backends:
            try:
                backend.stop(0.0, True, False)
            except Exception:
                pass
        self._finished.set()

    def _shutdown(self, timeout: float | None, cancel_futures: bool) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        if cancel_futures:
            self._cancel_unstarted()
        with self._cond:
            self._cond.wait_for(lambda: self._runners == 0, remaining(deadline))
            leftovers = [item[0] for item in self._waiting] + list(self._running)
            self._waiting.clear()
        for future in leftovers:  # the deadline passed: cancel, never leave pending
            force_cancel(future)
        with self._cond:
            self._cond.wait_for(lambda: self._runners == 0, _RELEASE_GRACE)
        self._finished.set()

    # ---- statistics ----

    def stats(self) -> dict[str, Any]:
        with self._cond:
            running, waiting = len(self._running), len(self._waiting)
            workers = [
                {
                    "worker": f"{self.name}.{p.index}",
                    "state": "running" if p.busy else "idle",
                    "total": p.total,
                    "created": p.created,
                }
                for p in self._positions
            ]
            return {
                "pool": self.name,
                "mode": self.options.mode.value,
                "load_balancing": self.options.load_balancing.value,
                "max_queued_tasks": None,
                "on_demand": True,
                "max_workers": self.limit,
                "stopped": self.closed,
                "alive_workers": running,
                "waiting": waiting,
                "unfinished": running + waiting,
                "total": self._total,
                "workers_created": self._workers_created,
                "workers": workers,
            }


class OnDemandPool(PoolHandle):
    """A pool that creates a worker per call (``on_demand=True``); same methods as the class.

    Besides the user's methods: ``stop()``, the context manager, and ``pool_stats()``.
    """

    def __repr__(self) -> str:
        core = self.__dict__.get("_engine")
        if core is None:
            return "<on-demand pool (not started)>"
        state = "stopped" if core.closed else "running"
        mode = self._options.mode.value
        return f"<{mode} on-demand pool {core.name}, up to {core.limit} workers ({state})>"
