"""What fixed and on-demand pools share: starting and stopping many backends at once, in
parallel (so that N slow ``__init__``s or N stop deadlines cost about as much as one), the
pool's own threads, ``stop()``, and the handle's ``pool_stats()``.
"""

from __future__ import annotations

import itertools
import sys
import threading
from multiprocessing import connection
from typing import Any

from .backends import Backend
from .proxy import WorkerHandle

_pool_counter = itertools.count(1)


def pool_name(cls: type) -> str:
    return f"{cls.__name__}-pool#{next(_pool_counter)}"


def start_backends(backends: list[Backend]) -> tuple[list[Backend], BaseException | None]:
    """Start all backends in parallel; return the ones that started and the first ``__init__`` error.

    All are launched first. Backends with a ``connection`` (process) are then taken as they become
    ready (not in index order), so the first ``__init__`` error is seen as soon as it happens;
    the workers not yet ready are killed without waiting for their ``__init__``. The others
    (a thread's ``__init__`` runs in its own thread and cannot be interrupted) are each waited
    for to the end before the first error is reported. Returns the started ones in index order.
    """
    error: BaseException | None = None
    launched: list[Backend] = []
    for backend in backends:
        try:
            backend.launch()
        except BaseException as exc:
            error = exc
            break
        launched.append(backend)
    if any(backend.connection is None for backend in launched):
        ready: list[Backend] = []
        for backend in launched:
            try:
                backend.wait_ready()
            except BaseException as exc:
                error = error or exc
            else:
                ready.append(backend)
        return ready, error
    started: set[int] = set()
    unready = list(launched)
    try:
        while unready and error is None:
            for backend in _first_ready(unready):
                try:
                    backend.wait_ready()
                except BaseException as exc:  # it killed its own child; stopping it again is harmless
                    error = exc
                    break
                unready.remove(backend)
                started.add(id(backend))
    except BaseException as exc:  # e.g. KeyboardInterrupt while waiting: give up like on an error
        error = exc
    if error is not None:
        for backend in unready:  # launched, not ready: killed now, their ``__init__`` abandoned
            try:
                backend.stop(0.0, True, True)
            except Exception:
                pass
    return [b for b in backends if id(b) in started], error


def _first_ready(backends: list[Backend]) -> list[Backend]:
    """Block until at least one of ``backends`` has something to read (its ready message, its
    ``__init__`` error or the end of its connection); return those, in index order."""
    readable = set(map(id, connection.wait([b.connection for b in backends])))
    return [b for b in backends if id(b.connection) in readable]


class OwnThreads:
    """The helper threads a pool runs user code on or waits for (dispatcher, replacers,
    runners, stoppers): a ``stop()`` running on one of them must not wait for the rest of
    the stop, which may need that very thread to return."""

    def __init__(self) -> None:
        self._threads: set[threading.Thread] = set()

    def start(self, target, args: tuple = (), name: str = "concurry-pool") -> threading.Thread:
        """Start a daemon thread counted as the pool's own for as long as it runs."""
        thread = threading.Thread(target=self._run, args=(target, args), name=name, daemon=True)
        self._threads.add(thread)
        try:
            thread.start()
        except BaseException:
            self._threads.discard(thread)
            raise
        return thread

    def _run(self, target, args: tuple) -> None:
        try:
            target(*args)
        finally:
            self._threads.discard(threading.current_thread())

    def adopt(self) -> _Adopted:
        """``with own.adopt():`` counts the current thread as the pool's own meanwhile."""
        return _Adopted(self._threads)

    def __contains__(self, thread: threading.Thread) -> bool:
        return thread in self._threads


class _Adopted:
    def __init__(self, threads: set[threading.Thread]):
        self._threads = threads

    def __enter__(self) -> None:
        self._thread = threading.current_thread()
        self._added = self._thread not in self._threads
        self._threads.add(self._thread)

    def __exit__(self, *exc_info: object) -> None:
        if self._added:
            self._threads.discard(self._thread)


def stop_backends(
    backends: list[Backend], timeout: float | None, cancel_futures: bool, own: OwnThreads | None = None
) -> None:
    """Stop backends in parallel, each with the same deadline; always returns. The helper
    threads count as ``own``'s (a done callback fired by a stop may call ``stop()`` again)."""

    def stop(backend: Backend) -> None:
        try:
            backend.stop(timeout, cancel_futures, True)
        except Exception:
            pass

    if len(backends) == 1 or sys.is_finalizing():  # (a thread started at exit never runs)
        for backend in backends:
            stop(backend)
        return
    helpers = []
    own = own if own is not None else OwnThreads()
    for backend in backends:
        try:
            thread = own.start(stop, (backend,), "concurry-pool-stop")
            helpers.append(thread)
        except RuntimeError:  # interpreter shutting down: no new threads
            stop(backend)
    for thread in helpers:
        thread.join()


class PoolStop:
    """``stop()`` shared by fixed and on-demand pools.

    A subclass provides ``closed``, ``own`` (its ``OwnThreads``), ``_finished`` (an Event set
    once stopped), ``_closing_lock``, and: ``on_own_thread()``, ``_cancel_unstarted()`` (cancel
    what has not started, before ``stop()`` returns), ``_shutdown(timeout, cancel_futures)``
    (drain, cancel at the deadline, release) and ``_release_now()`` (at interpreter exit).
    """

    closed: bool
    own: OwnThreads
    _finished: threading.Event
    _closing_lock: Any

    def stop(self, timeout: float | None, cancel_futures: bool, wait: bool) -> None:
        """Stop the pool. Called from a thread the pool runs user code on (a method, a done
        callback), it never waits for that thread: the stop finishes in the background."""
        lock = self._closing_lock
        # At interpreter exit a frozen thread may hold the lock for good; only this thread runs.
        locked = lock.acquire(timeout=0.5) if sys.is_finalizing() else lock.acquire()
        try:
            first = not self.closed
            self.closed = True
        finally:
            if locked:
                lock.release()
        here = self.on_own_thread()
        if not first:
            if wait and not here:
                self._finished.wait(timeout)
            return
        # Until the stop is under way, callbacks it fires run here and may call stop() again.
        with self.own.adopt():
            if cancel_futures:  # as concurrent.futures: cancelled before stop() returns
                self._cancel_unstarted()
            if sys.is_finalizing():  # no thread can start or run now: cancel and release at once
                self._release_now()
                return
            if wait and not here:
                self._shutdown(timeout, cancel_futures)
                return
            try:
                self.own.start(self._shutdown, (timeout, cancel_futures), f"concurry-pool-stop-{self.name}")
            except RuntimeError:  # interpreter shutting down: cancel what waits, release now
                self._release_now()

    def on_own_thread(self) -> bool:
        raise NotImplementedError

    def _cancel_unstarted(self) -> None:
        raise NotImplementedError

    def _shutdown(self, timeout: float | None, cancel_futures: bool) -> None:
        raise NotImplementedError

    def _release_now(self) -> None:
        raise NotImplementedError


class PoolHandle(WorkerHandle):
    """What pools add to a handle: ``pool_stats()``, read from the pool's core."""

    _handle_kind = "pool handle"  # in the first line of ``help(pool)``

    def pool_stats(self) -> dict[str, Any]:
        """A snapshot for debugging balance. Fixed pools: per worker its state, ``unfinished``
        calls (running, held by its backend or waiting in the library's queue), ``in_backend``,
        ``waiting``, ``total`` calls assigned and ``restarts``, plus the algorithm and totals.
        On-demand pools: workers alive now, calls waiting for one, calls in total, workers
        created so far, the cap (``max_workers``), and per worker position (the one
        ``load_balancing_on_demand`` chose for each call) its state, calls and workers created."""
        return self._engine.stats()
