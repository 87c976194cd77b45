"""A pool's worker positions (``Slot``) and the thread that hands them waiting calls
(``Dispatcher``).

A slot holds one worker's backend, its counters and the calls waiting for it in the library;
the dispatcher moves those calls into the backend as it drains, woken by a done callback on one
handed-over future (or after a short delay), never by polling.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from .backends import Backend

# ---- one worker of a pool ----


class Slot:
    """One worker position: its current backend, its counters and its waiting calls.

    The backend counts its own unfinished calls (``backend.unfinished``); the slot adds the
    calls waiting in ``queue`` and remembers the last futures it handed over (``recent``), so
    that it can be woken when the backend has drained to half its cap without a done callback
    on every call.
    """

    __slots__ = ("backend", "dead", "index", "live", "lock", "queue", "recent", "restarts", "total", "wake")

    def __init__(self, index: int, backend: Backend, core: Any):
        self.index = index
        self.backend = backend
        self.live = True  # False while a replacement starts, or for good once ``dead``
        self.dead = False
        self.total = 0  # calls ever assigned to this position
        self.restarts = 0
        self.queue: collections.deque = collections.deque()  # (future, name, args, kwargs)
        # Weak references: a future the backend still holds stays alive, a finished one the
        # caller dropped is not kept (nor its result) just because the pool saw it.
        self.recent: collections.deque = collections.deque(maxlen=max(1, min(core.cap, 4096)))
        # Re-entrant: a queued call's future may fail inside ``submit`` (unpicklable argument)
        # and run a user callback that calls the pool again, on this thread.
        self.lock = threading.RLock()
        wake, slot = core.dispatcher.wake, self
        self.wake = lambda _future=None: wake(slot)

    @property
    def in_backend(self) -> int:
        return self.backend.unfinished

    @property
    def pending(self) -> int:
        """Assigned and not finished: in the backend or waiting in the library's queue."""
        return self.backend.unfinished + len(self.queue)

    def watch_target(self, low: int) -> cf.Future | None:
        """An unfinished handed-over future after whose end at most ``low`` calls remain in the
        backend (calls of one worker finish in order); None if none is known."""
        recent = list(self.recent)
        start = max(0, len(recent) - low - 1)
        for ref in recent[start::-1] + recent[start + 1:]:
            future = ref()
            if future is not None and not future.done():
                return future
        return None

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
        if self.backend.crashed:
            return "crashed"
        return "stopped" if self.backend.stopped else "running"


RETRY_DELAY = 0.002  # a backend still counts a call that just ended: look again this much later
# ``active``: an idle worker takes over calls queued behind running ones this much later, if it
# is still idle then; in a burst it has new calls by then, and nothing moves for nothing.
STEAL_DELAY = 0.001


class Dispatcher:
    """Hands waiting calls to backends as they drain. One thread per pool, started on first
    need; the caller never waits for it."""

    def __init__(self, core: Any):
        self._core = core
        self._cond = threading.Condition(threading.Lock())
        self._ready: collections.deque = collections.deque()
        self._later: list[tuple[float, int, Slot]] = []  # heap of delayed wake-ups
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def wake(self, slot: Slot | Callable[[], None], delay: float = 0.0) -> None:
        with self._cond:
            if self._closed:
                return
            if delay:
                heapq.heappush(self._later, (time.monotonic() + delay, next(self._seq), slot))
            else:
                self._ready.append(slot)
            if self._thread is None:
                name = f"concurry-pool-dispatch-{self._core.name}"
                self._thread = self._core.own.start(self._run, (), name)
            else:
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _next(self) -> Slot | None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._later and self._later[0][0] <= now:
                    self._ready.append(heapq.heappop(self._later)[2])
                if self._ready:
                    return self._ready.popleft()
                if self._closed:
                    return None
                self._cond.wait(self._later[0][0] - now if self._later else None)

    def _run(self) -> None:
        hand_off = self._core.hand_off
        while True:
            slot = self._next()
            if slot is None:
                return
            try:
                if type(slot) is Slot:
                    hand_off(slot)
                else:  # a task for the dispatcher (the ``active`` pools' re-balancing)
                    slot()
            except Exception:  # never let the dispatcher die; the stop sweep resolves leftovers
                pass
