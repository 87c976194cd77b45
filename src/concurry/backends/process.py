"""``process`` mode: one child process per worker, one socket pair, one reader thread.

Starting: by default a fresh interpreter runs a tiny bootstrap (``python -u -c ...``) with the
parent's ``sys.path``; the worker class and its arguments follow over the socket (plain pickle
by reference when importable, else by value through ``class_transport``). The user's script
is never re-run, so scripts without a ``__main__`` guard, ``python -c`` and notebooks work.
``mp_context="fork"`` forks.

Calling: a call is pickled once, outside any lock: in the caller's thread (plain pickle;
``class_transport`` for lambdas and ``__main__`` objects), or, for a pool's calls with non-scalar
arguments, by this worker's writer thread (a slow argument then delays only this worker's
calls). At most ``_WINDOW`` calls are handed to the child at once; they are ``running()``. Later
ones wait here, pending: ``cancel()`` works on them and a pool may ``withdraw()`` them (with
``claims``, also those in the window the child has not claimed yet). The
caller writes a small call itself; otherwise the writer thread sends queued calls in batches.
One reader thread per worker resolves futures in order, checking each outcome's tag (call
index, sender pid) so a stray outcome breaks the worker instead of answering another call.
Calls whose arguments hold pending futures wait, with every later call, until those resolve.

Dying: the reader sees the socket close (or the child exit); every unfinished future fails with
``WorkerCrashedError``, later calls raise it, and a pool's listener is told. The child exits
when the socket closes, and on Linux the kernel kills it the moment the parent dies.

Where the pieces are: this module is the backend's public face (starting, calling, stopping);
``process_queue`` the calls waiting in this process, ``process_transport`` the reader and
writer threads, ``process_exit`` the cleanup at interpreter exit, ``process_launch`` and
``forkserver`` how children are created, ``process_wire`` what travels and how, and
``process_child`` the child's loop.
"""

from __future__ import annotations

import collections
import functools
import os
import pickle
import socket
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ..errors import WorkerCrashedError
from ..futures import BaseFuture, ConcurrentFuture, force_cancel, set_outcome
from ..runtime import CallOptions, call_has_futures, replace_futures
from ..thread_exit import join
from . import process_launch as launch
from . import process_wire as wire
from .base import Backend
from .process_exit import live
from .process_launch import child_reaped, describe_exit
from .process_queue import DIRECT_MAX_BYTES, STOP_WAITING, Deferred, Waiting, mark_running, new
from .process_transport import Transport
from .process_wire import STOP

# At most this many calls are handed to the child at once (one running, the rest queued there,
# committed: running() and not cancellable); later calls wait in this process, pending, where
# cancel() and a pool's withdraw() can still take them back. Large enough for the child never
# to wait for the parent between quick calls, small enough that a long call holds few behind it.
_WINDOW = 16


def start_child(method: str, fd: int, control_fd: int) -> Any:
    """Start a child serving the socket ``fd``; returns a ``Popen``-like handle (``pid``, ``poll``,
    ``wait``, ``kill``). The caller closes its copies of ``fd`` and ``control_fd`` afterwards."""
    if method == "fork":
        return launch.fork_child(fd, control_fd)
    if method == "forkserver":
        from . import forkserver

        return forkserver.get_server().fork(fd, control_fd)
    return launch.spawn_child(fd, control_fd)


class ProcessBackend(Transport, Backend):
    """A child process that owns the instance and runs calls in submission order."""

    _crashed = False
    #: Calls handed to the child at once (``running()``, no longer cancellable); later ones
    #: wait in this process, pending.
    window = _WINDOW
    # ``claims`` (see Backend): calls in the window that have not started can be taken back
    # too, at the cost of a lock per call in the child (see ``process_child``).
    _reader: threading.Thread | None = None
    _writer: threading.Thread | None = None

    # ---- starting ----

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def launch(self) -> None:
        """Start the child process and send it the worker; returns without waiting for ``__init__``."""
        method = self.options.mp_context
        if method not in ("spawn", "fork", "forkserver"):
            raise ValueError(f"mp_context must be 'spawn', 'forkserver' or 'fork', got {method!r}")
        init_payload = self._init_payload()
        self._lock = threading.Lock()
        self._pending: collections.deque = collections.deque()  # futures handed to the child, in order
        self._names: collections.deque = collections.deque()  # ... and their method names
        self._sent: collections.deque = collections.deque()  # ... and, with claims, (name, args, kwargs)
        self._taken_back = 0  # with claims: futures in _pending replaced by None (taken back)
        self._unsent: collections.deque = collections.deque()  # calls waiting for the window
        self._queue: collections.deque = collections.deque()  # payloads for the writer thread
        self._held: collections.deque = collections.deque()  # calls waiting for argument futures
        self._writing = False
        self._wake = threading.Event()
        self._seq = 0  # calls handed to the child so far (queued or written)
        self._finished = 0  # outcomes received
        self._crashed = False
        self._broken = ""  # why the worker was declared broken (a stray outcome), if it was
        self._closed = False  # no more writes: stop message sent, or child gone
        self._killing = False  # the stop deadline passed: unfinished calls are cancelled
        self._reaped = False
        self._exit_code: int | None = None
        parent_sock, child_sock = socket.socketpair()
        control_fd, self._control = wire.control_page()
        # bound now: stop() may run in a finalizer at interpreter exit, when module globals are gone
        self._mark_stopping = functools.partial(wire.INT.pack_into, self._control, wire.STOPPING, 1)
        self._lock_fd = -1
        if self.claims:
            wire.INT.pack_into(self._control, wire.CLAIMS, 1)
            self._lock_fd = os.dup(control_fd)  # POSIX locks: we lock through our own descriptor
        try:
            self._process: Any = start_child(method, child_sock.fileno(), control_fd)
        except BaseException:
            parent_sock.close()
            self._close_control()
            raise
        finally:
            child_sock.close()
            os.close(control_fd)
        self.pid = self._process.pid
        self._conn = Connection(parent_sock.detach())
        live.add(self)
        try:
            self._conn.send_bytes(init_payload)
        except OSError:
            pass  # the child died already: wait_ready reports it

    def _init_payload(self) -> bytes:
        """The class and its arguments for the child: by reference when importable, else by value
        in a form that leaves the library's own objects (handles, locks) behind (``class_transport``)."""
        from ..class_transport import dumps_worker

        args, kwargs = self.args, self.kwargs
        if self.options.unwrap_futures and call_has_futures(args, kwargs):
            args, kwargs = replace_futures((args, kwargs), lambda f: f.result())
        try:
            return dumps_worker(self.cls, (args, kwargs, CallOptions.of(self.options)))
        except Exception as exc:
            culprit = wire.unpicklable_part((self.cls, *args, *kwargs.values()))
            what = (
                f"class {culprit.__module__}.{culprit.__qualname__}"
                if isinstance(culprit, type)
                else (wire.type_name(culprit))
            )
            raise TypeError(
                f"cannot start process worker {self.name}: {what} cannot be pickled "
                f"to send it to the worker process: {exc}"
            ) from exc

    @property
    def connection(self) -> Connection:
        """The socket to the child: readable once ``wait_ready`` would not block."""
        return self._conn

    def wait_ready(self) -> None:
        """Block until the instance exists in the child; raise its ``__init__`` error if any."""
        try:
            status, value = pickle.loads(self._conn.recv_bytes())
        except (EOFError, OSError):
            self._fail_start()
            code = self._process.poll()
            raise WorkerCrashedError(
                f"process worker {self.name} (pid {self.pid}) {describe_exit(code)} while starting"
            ) from None
        if status != wire.OK:
            self._fail_start()
            raise wire.decode_error(value)
        self.args = self.kwargs = None  # the child owns them now
        prefix = f"concurry-process-{self.name}"
        self._reader = threading.Thread(target=self._read, name=f"{prefix}-reader", daemon=True)
        self._writer = threading.Thread(target=self._write, name=f"{prefix}-writer", daemon=True)
        self._reader.start()
        self._writer.start()

    def _fail_start(self) -> None:
        self._stopped = self._closed = True
        self._conn.close()
        self._process.kill()
        self._process.wait()
        child_reaped(self._process)
        self._close_control()
        self._reaped = True
        live.discard(self)

    # ---- calling ----

    @property
    def crashed(self) -> bool:
        """True once the child died on its own; the pool replaces such workers."""
        return self._crashed

    @property
    def unfinished(self) -> int:
        """Calls submitted and not finished (held, unsent or in the child); read by pool statistics."""
        return len(self._pending) - self._taken_back + len(self._unsent) + len(self._held)

    def submit(
        self, name: str, args: tuple, kwargs: dict, future: ConcurrentFuture | None = None
    ) -> BaseFuture:
        """The generic entry, used by pools (which may hold a lock or run on their dispatcher):
        arguments other than plain scalars are pickled by this worker's writer thread, so a slow
        one delays only the calls of this worker, which would wait for it anyway."""
        future = ConcurrentFuture() if future is None else future
        return self._call(name, args, kwargs, future, defer=not _plain(args, kwargs))

    def caller(self, name: str) -> Callable[..., BaseFuture]:
        call = self._call
        new_future = ConcurrentFuture

        def caller(*args: Any, **kwargs: Any) -> BaseFuture:
            return call(name, args, kwargs, new_future())

        return caller

    def _call(
        self, name: str, args: tuple, kwargs: dict, future: ConcurrentFuture, defer: bool = False
    ) -> BaseFuture:
        if self._stopped or self._crashed:
            raise self._refusal()
        if self.options.unwrap_futures and (args or kwargs) and call_has_futures(args, kwargs):
            return self._hold(future, name, args, kwargs)
        if defer:
            payload: Any = new(Deferred, (future, name, args, kwargs))
        else:
            payload = self._encode(name, args, kwargs, future)  # outside the lock: may take long
            if payload is None:
                return future
        with self._lock:
            if self._stopped or self._crashed:
                raise self._refusal()
            if self._held:  # an earlier call waits for its arguments: keep actor order
                self._held.append(new(Waiting, (future, name, args, kwargs, payload, ())))
                return future
            pending = self._pending
            if self._unsent or len(pending) >= self.window:
                # the child has enough to do: the call waits here, pending and cancellable
                self._unsent.append(new(Waiting, (future, name, args, kwargs, payload, ())))
                return future
            # handed to the child, which will run it after at most _WINDOW - 1 others: running
            if not mark_running(future):
                return future
            pending.append(future)
            self._names.append(name)
            if self.claims:
                self._sent.append((name, args, kwargs))
            self._seq += 1
            if (
                not self._queue
                and not self._writing
                and not defer
                and (len(pending) == 1 or wire.size_of(payload) < DIRECT_MAX_BYTES)
            ):  # the child is idle, or the socket buffer holds the call: write it ourselves
                try:
                    wire.send(self._conn, payload)
                except OSError:
                    pass  # the child is gone: the reader fails this future
            else:
                self._queue.append(payload)
                self._wake.set()
        return future

    def runs_on(self, thread: threading.Thread) -> bool:
        return thread is self._reader or thread is self._writer

    def _close_control(self) -> None:
        self._control.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _refusal(self) -> RuntimeError:
        if self._crashed:
            if self._broken:
                return WorkerCrashedError(f"{self._broken}; create a new one with .init()")
            return WorkerCrashedError(
                f"process worker {self.name} (pid {self.pid}) {describe_exit(self._exit_code)}; "
                "create a new one with .init()"
            )
        return self.stopped_error()

    def _encode(self, name: str, args: tuple, kwargs: dict, future: ConcurrentFuture) -> wire.Payload | None:
        """Pickle a call; if it cannot be pickled, fail its future (naming method and type)."""
        call = (name, args, kwargs)
        try:
            return wire.dump(call, wire.ByReferencePickler)
        except Exception:
            pass
        try:
            from ..class_transport import dumps

            return dumps(call)
        except Exception as exc:
            from ..remote_traceback import unpicklable_argument

            culprit = wire.unpicklable_part((*args, *kwargs.values()))
            set_outcome(future, None, unpicklable_argument(self.cls, name, args, culprit, self.name, exc))
            return None

    # ---- stopping ----

    def stop(self, timeout: float | None = None, cancel_futures: bool = False, wait: bool = True) -> None:
        reader = self._reader
        if not self._begin_stop():
            if wait and reader is not None and reader is not threading.current_thread():
                self._await_reader(reader, timeout)  # begun earlier: this call's deadline holds
            return
        if reader is None:  # never started (launch failed, or wait_ready not called)
            if hasattr(self, "_process") and not self._reaped:
                self._fail_start()
            return
        cancelled: list[ConcurrentFuture] = []
        with self._lock:
            if not self._control.closed:
                self._mark_stopping()  # the child cuts a retry back-off short
            if cancel_futures:
                cancelled = self._waiting_futures()
                self._unsent.clear()
                self._held.clear()
                if not self._control.closed:
                    with wire.page_lock(self._lock_fd):  # with claims: exact, else a close guess
                        wire.INT.pack_into(self._control, wire.WATERMARK, self._seq)
                        if self.claims:
                            first = wire.INT.unpack_from(self._control, wire.CLAIMED)[0]
                        else:  # calls after the one the child is running are skipped there
                            first = wire.INT.unpack_from(self._control, wire.STARTING)[0] + 1
                    skip_from = max(0, first - self._finished)
                    cancelled += [f for f in list(self._pending)[skip_from:] if f is not None]
            if self._held:
                self._held.append(STOP_WAITING)
            elif self._unsent:
                self._unsent.append(STOP_WAITING)
            else:
                self._queue.append(STOP)
                self._wake.set()
        for future in cancelled:
            force_cancel(future)
        if wait and reader is not threading.current_thread():
            self._await_reader(reader, timeout)

    def _await_reader(self, reader: threading.Thread, timeout: float | None) -> None:
        """Wait for the child to finish until ``timeout``, then kill it (its calls are cancelled)."""
        if join(reader, timeout):
            return
        if sys.is_finalizing():  # the reader is frozen for good (it may even hold our lock)
            self._process.kill()
            self._abandon()
            return
        with self._lock:
            self._killing = True
        self._process.kill()
        reader.join()

    def _abandon(self) -> None:
        """At interpreter exit, with the reader frozen: cancel what it would have settled (only
        this thread runs now, so nothing changes under us; the killed child needs no reaping)."""
        for future in [f for f in self._pending if f is not None] + self._waiting_futures():
            force_cancel(future)


_PLAIN = (int, float, str, bytes, bool, type(None))


def _plain(args: tuple, kwargs: dict) -> bool:
    """Only builtin scalars among the arguments: pickling them is quick, whatever their size."""
    for value in args:
        if type(value) not in _PLAIN:
            return False
    if kwargs:
        for value in kwargs.values():
            if type(value) not in _PLAIN:
                return False
    return True
