"""Calls a process worker keeps in this process until the child may have them, in order.

At most ``ProcessBackend.window`` calls are handed to the child at once; later ones wait here,
*unsent*, still pending: ``cancel()`` works on them and a pool may take them back
(``withdraw``; with claims, also calls in the window the child has not claimed yet). A call
whose arguments hold pending futures is *held*, with every later call, until those resolve.
Both kinds wait as ``Waiting`` records; the stop message keeps its place in line as one too.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, NamedTuple

from ..futures import ConcurrentFuture, set_outcome
from ..runtime import collect_futures, replace_futures
from . import process_wire as wire
from .process_wire import STOP

DIRECT_MAX_BYTES = 8 * 1024  # a caller (or the reader) writes a call itself only if it is this small

# Records are built with ``new(Record, (...))`` on the per-call paths: it skips the Python-level
# ``__new__`` a NamedTuple call goes through, and costs what a plain tuple does.
new = tuple.__new__


class Deferred(NamedTuple):
    """A call the writer thread pickles (a pool's call with non-scalar arguments, or a held
    call once its argument futures resolved): its ``payload`` until then."""

    future: ConcurrentFuture
    name: str
    args: tuple
    kwargs: dict


class Waiting(NamedTuple):
    """A call waiting in this process: unsent (for the window) or held (for argument futures)."""

    future: Any  # a ConcurrentFuture, or STOP for the stop message
    name: str | None
    args: tuple | None
    kwargs: dict | None
    payload: Any  # bytes, chunks (a list) or a Deferred; None while held for argument futures
    deps: tuple | list  # the argument futures a held call waits for


STOP_WAITING = Waiting(STOP, None, None, None, None, ())


def mark_running(future: ConcurrentFuture) -> bool:
    """``set_running_or_notify_cancel``, for a future that may be running already: one taken
    back from a worker of the same pool (``withdraw`` with claims marks it)."""
    if "taken_back" in future.__dict__:  # (asking it again would log a critical error)
        del future.taken_back
        return future.running()
    return future.set_running_or_notify_cancel()


def first_failure(futures: list) -> BaseException | None:
    for future in futures:
        if future.cancelled():
            import concurrent.futures as cf

            return cf.CancelledError()
        error = future.exception()
        if error is not None:
            return error
    return None


class CallQueue:
    """The unsent and held calls of a ``ProcessBackend`` (a mixin: the state is set up by
    ``ProcessBackend.launch``, and every method here runs under ``_lock`` unless it says)."""

    window: int
    claims: bool
    _lock: threading.Lock
    _pending: collections.deque  # futures handed to the child, in order (None: taken back)
    _names: collections.deque  # ... and their method names
    _sent: collections.deque  # ... and, with claims, (name, args, kwargs)
    _unsent: collections.deque  # Waiting: calls waiting for room in the window
    _held: collections.deque  # Waiting: calls waiting for argument futures (and those after them)
    _queue: collections.deque  # payloads for the writer thread
    _wake: threading.Event
    _conn: Any
    _control: Any
    _lock_fd: int
    _seq: int
    _finished: int
    _taken_back: int
    _writing: bool
    _closed: bool
    _stopped: bool
    _crashed: bool

    def _refill(self, from_reader: bool = False) -> None:
        """Hand unsent calls to the child while the window has room (caller holds the lock).

        The reader writes small calls itself (the socket buffer holds a window of them, so the
        write cannot block while the child waits for us to read); anything else goes through
        the writer thread.
        """
        unsent, pending = self._unsent, self._pending
        direct = from_reader and not self._queue and not self._writing
        items: list = []
        while unsent and len(pending) < self.window:
            future, name, args, kwargs, payload, _ = unsent.popleft()
            if future is STOP:
                items.append(STOP)
                direct = False
                break
            if not mark_running(future):
                continue  # cancelled while it waited: it never runs
            pending.append(future)
            self._names.append(name)
            if self.claims:
                self._sent.append((name, args, kwargs))
            self._seq += 1
            items.append(payload)
            if direct and (type(payload) is not bytes or len(payload) >= DIRECT_MAX_BYTES):
                direct = False
        if not items:
            return
        if direct:
            try:
                wire.send_batches(items, self._conn)
            except OSError:
                pass  # the child is gone: the reader fails these futures
        else:
            self._queue.extend(items)
            self._wake.set()

    def withdraw(self) -> list[tuple[ConcurrentFuture, str, tuple, dict]]:
        """Take back the calls not handed to the child yet (they wait in this process), and,
        with claims, those handed to it that it has not claimed (their futures stay running).
        Takes the lock itself."""
        with self._lock:
            if self._closed and not self._unsent and not self._held:
                return []
            taken = self._take_back_unclaimed() if self.claims else []
            for entry in (*self._unsent, *self._held):
                if entry.future is not STOP and not entry.future.done():
                    taken.append((entry.future, entry.name, entry.args, entry.kwargs))
            stop = any(entry.future is STOP for entry in (*self._unsent, *self._held))
            self._unsent.clear()
            self._held.clear()
            if stop:
                self._queue.append(STOP)
                self._wake.set()
        return taken

    def _take_back_unclaimed(self) -> list[tuple[ConcurrentFuture, str, tuple, dict]]:
        """Calls in the window the child has not claimed: from now on it skips them (the lock
        makes "claimed" and "taken back" exclusive)."""
        pending = self._pending
        if not pending or self._control.closed:
            return []
        with wire.page_lock(self._lock_fd):
            first = max(wire.INT.unpack_from(self._control, wire.CLAIMED)[0], self._finished)
            if first >= self._seq:
                return []
            wire.INT.pack_into(self._control, wire.SKIP_FROM, first)
            wire.INT.pack_into(self._control, wire.SKIP_TO, self._seq)
        # Calls first .. seq-1 are the last ones in _pending: the reader pops only from the left,
        # and none of these can have an outcome yet, so counting from the right is stable.
        taken = []
        for back in range(self._seq - first, 0, -1):  # oldest first
            future = pending[-back]
            if future is not None:
                future.taken_back = True  # running already: see mark_running
                taken.append((future, *self._sent[-back]))
                pending[-back] = None  # its outcome ("skipped") still arrives, in order
                self._taken_back += 1
        return taken

    def _waiting_futures(self) -> list[ConcurrentFuture]:
        """The futures of the unsent and held calls (not the stop message)."""
        return [entry.future for entry in (*self._unsent, *self._held) if entry.future is not STOP]

    # ---- calls waiting for futures among their arguments ----

    def _hold(self, future: ConcurrentFuture, name: str, args: tuple, kwargs: dict) -> ConcurrentFuture:
        """Hold a call until the futures among its arguments resolve (takes the lock itself)."""
        deps = collect_futures((args, kwargs), [])
        with self._lock:
            if self._stopped or self._crashed:
                raise self._refusal()
            self._held.append(new(Waiting, (future, name, args, kwargs, None, deps)))
        for dep in deps:
            dep.add_done_callback(self._release_held)
        return future

    def _release_held(self, _: Any = None) -> None:
        """Move, in order, every held call at the front whose argument futures are all done to
        the unsent calls (they go to the child as the window allows). Takes the lock itself."""
        failed: list[tuple[ConcurrentFuture, BaseException]] = []
        with self._lock:
            held = self._held
            while held and all(dep.done() for dep in held[0].deps):
                entry = held.popleft()
                future = entry.future
                if future is STOP:
                    self._unsent.append(STOP_WAITING)
                    continue
                if self._crashed or future.done():
                    continue
                if entry.payload is None:
                    error = first_failure(entry.deps)
                    if error is not None:
                        failed.append((future, error))
                        continue
                    try:
                        args, kwargs = replace_futures((entry.args, entry.kwargs), lambda f: f.result())
                    except BaseException as exc:
                        failed.append((future, exc))
                        continue
                    # pickled by the writer: this runs under our lock, on whoever resolved it
                    payload = new(Deferred, (future, entry.name, args, kwargs))
                    entry = new(Waiting, (future, entry.name, entry.args, entry.kwargs, payload, ()))
                self._unsent.append(entry)
            if not self._closed:
                self._refill()
        for future, error in failed:
            if future.set_running_or_notify_cancel():
                set_outcome(future, None, error)
