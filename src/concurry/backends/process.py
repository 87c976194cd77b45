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
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import fcntl
import os
import pickle
import select
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

from ..errors import WorkerCrashedError
from ..futures import BaseFuture, ConcurrentFuture, force_cancel, set_outcome
from ..runtime import call_has_futures, collect_futures, replace_futures
from ..thread_exit import join
from . import process_child as child
from . import process_wire as wire
from .base import Backend
from .process_launch import child_reaped, control_page, describe_exit, start_child
from .process_wire import STOP

_DIRECT_MAX_BYTES = 8 * 1024  # the caller writes a call itself only if it is this small
# At most this many calls are handed to the child at once (one running, the rest queued there,
# committed: running() and not cancellable); later calls wait in this process, pending, where
# cancel() and a pool's withdraw() can still take them back. Large enough for the child never
# to wait for the parent between quick calls, small enough that a long call holds few behind it.
_WINDOW = 16

# ---- cleanup at interpreter exit ----

_live: weakref.WeakSet = weakref.WeakSet()


_EXIT_GRACE = 1.0  # seconds every child gets, together, to finish at interpreter exit


@atexit.register
def _stop_all_at_exit() -> None:
    """Children never outlive the interpreter, and exit never waits on them for long.

    Every child is asked to stop at once and they share one grace period, so exit takes about
    ``_EXIT_GRACE`` however many workers are alive (busy ones are killed when it ends).
    """
    backends = list(_live)
    for backend in backends:
        backend.stop(timeout=0, wait=False)
    _reap_all(backends, deadline=time.monotonic() + _EXIT_GRACE)
    server = sys.modules.get(__package__ + ".forkserver")
    if server is not None:
        server.shutdown()


def _start(future: ConcurrentFuture) -> bool:
    """``set_running_or_notify_cancel``, for a future that may be running already: one taken
    back from a worker of the same pool (``withdraw`` with claims marks it)."""
    if "taken_back" in future.__dict__:  # (asking it again would log a critical error)
        del future.taken_back
        return future.running()
    return future.set_running_or_notify_cancel()


@contextlib.contextmanager
def _page_lock(fd: int) -> Iterator[None]:
    """The control page's cross-process lock (``fd`` -1: no claims, nothing to exclude)."""
    if fd < 0:
        yield
        return
    fcntl.lockf(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.lockf(fd, fcntl.LOCK_UN)


def _reap_all(backends: list, deadline: float) -> None:
    """Wait for the children until one shared ``deadline``, then kill whatever is left."""
    for backend in backends:
        backend._reap(deadline)  # after the deadline each one is killed without waiting


class ProcessBackend(Backend):
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
        control_fd, self._control = control_page()
        self._lock_fd = -1
        if self.claims:
            child._INT.pack_into(self._control, child.CLAIMS, 1)
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
        _live.add(self)
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
            return dumps_worker(self.cls, (args, kwargs, self.options.unwrap_futures))
        except Exception as exc:
            culprit = wire.unpicklable_part((self.cls, *args, *kwargs.values()))
            what = f"class {culprit.__module__}.{culprit.__qualname__}" if isinstance(culprit, type) else (
                wire.type_name(culprit)
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
        if status != child.OK:
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
        _live.discard(self)

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
            payload: Any = _Deferred((future, name, args, kwargs))
        else:
            payload = self._encode(name, args, kwargs, future)  # outside the lock: may take long
            if payload is None:
                return future
        with self._lock:
            if self._stopped or self._crashed:
                raise self._refusal()
            if self._held:  # an earlier call waits for its arguments: keep actor order
                self._held.append((future, name, args, kwargs, (), payload))
                return future
            pending = self._pending
            if self._unsent or len(pending) >= self.window:
                # the child has enough to do: the call waits here, pending and cancellable
                self._unsent.append((future, name, args, kwargs, payload))
                return future
            # handed to the child, which will run it after at most _WINDOW - 1 others: running
            if not _start(future):
                return future
            pending.append(future)
            self._names.append(name)
            if self.claims:
                self._sent.append((name, args, kwargs))
            self._seq += 1
            if not self._queue and not self._writing and not defer and (
                len(pending) == 1 or child.size_of(payload) < _DIRECT_MAX_BYTES
            ):  # the child is idle, or the socket buffer holds the call: write it ourselves
                try:
                    child.send(self._conn, payload)
                except OSError:
                    pass  # the child is gone: the reader fails this future
            else:
                self._queue.append(payload)
                self._wake.set()
        return future

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
            future, name, args, kwargs, payload = unsent.popleft()
            if future is STOP:
                items.append(STOP)
                direct = False
                break
            if not _start(future):
                continue  # cancelled while it waited: it never runs
            pending.append(future)
            self._names.append(name)
            if self.claims:
                self._sent.append((name, args, kwargs))
            self._seq += 1
            items.append(payload)
            if direct and (type(payload) is not bytes or len(payload) >= _DIRECT_MAX_BYTES):
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

    def runs_on(self, thread: threading.Thread) -> bool:
        return thread is self._reader or thread is self._writer

    def withdraw(self) -> list[tuple[ConcurrentFuture, str, tuple, dict]]:
        """Take back the calls not handed to the child yet (they wait in this process), and,
        with claims, those handed to it that it has not claimed (their futures stay running)."""
        with self._lock:
            if self._closed and not self._unsent and not self._held:
                return []
            taken = self._take_back_unclaimed() if self.claims else []
            taken += [(f, n, a, k) for f, n, a, k, _ in self._unsent if f is not STOP and not f.done()]
            taken += [(e[0], e[1], e[2], e[3]) for e in self._held if e[0] is not STOP and not e[0].done()]
            stop = any(e[0] is STOP for e in self._unsent) or any(e[0] is STOP for e in self._held)
            self._unsent.clear()
            self._held.clear()
            if stop:
                self._queue.append(STOP)
                self._wake.set()
        return taken

    def _take_back_unclaimed(self) -> list[tuple[ConcurrentFuture, str, tuple, dict]]:
        """Calls in the window the child has not claimed: from now on it skips them (the lock
        makes "claimed" and "taken back" exclusive). Caller holds ``self._lock``."""
        pending = self._pending
        if not pending or self._control.closed:
            return []
        with _page_lock(self._lock_fd):
            first = max(child._INT.unpack_from(self._control, child.CLAIMED)[0], self._finished)
            if first >= self._seq:
                return []
            child._INT.pack_into(self._control, child.SKIP_FROM, first)
            child._INT.pack_into(self._control, child.SKIP_TO, self._seq)
        # Calls first .. seq-1 are the last ones in _pending: the reader pops only from the left,
        # and none of these can have an outcome yet, so counting from the right is stable.
        taken = []
        for back in range(self._seq - first, 0, -1):  # oldest first
            future = pending[-back]
            if future is not None:
                future.taken_back = True  # running already: see _start
                taken.append((future, *self._sent[-back]))
                pending[-back] = None  # its outcome ("skipped") still arrives, in order
                self._taken_back += 1
        return taken

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

    def _encode(self, name: str, args: tuple, kwargs: dict, future: ConcurrentFuture) -> child.Payload | None:
        """Pickle a call; if it cannot be pickled, fail its future (naming method and type)."""
        call = (name, args, kwargs)
        try:
            return child.dump(call, wire.ByReferencePickler)
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

    # ---- calls waiting for futures among their arguments ----

    def _hold(self, future: ConcurrentFuture, name: str, args: tuple, kwargs: dict) -> BaseFuture:
        deps = collect_futures((args, kwargs), [])
        with self._lock:
            if self._stopped or self._crashed:
                raise self._refusal()
            self._held.append((future, name, args, kwargs, deps, None))
        for dep in deps:
            dep.add_done_callback(self._release_held)
        return future

    def _release_held(self, _: Any = None) -> None:
        """Move, in order, every held call at the front whose argument futures are all done to
        the unsent calls (they go to the child as the window allows)."""
        failed: list[tuple[ConcurrentFuture, BaseException]] = []
        with self._lock:
            held = self._held
            while held and all(dep.done() for dep in held[0][4]):
                future, name, args, kwargs, deps, payload = held.popleft()
                if future is STOP:
                    self._unsent.append((STOP, None, None, None, None))
                    continue
                if self._crashed or future.done():
                    continue
                if payload is None:
                    error = wire.first_failure(deps)
                    if error is not None:
                        failed.append((future, error))
                        continue
                    try:
                        values = replace_futures((args, kwargs), lambda f: f.result())
                    except BaseException as exc:
                        failed.append((future, exc))
                        continue
                    # pickled by the writer: this runs under our lock, on whoever resolved it
                    payload = _Deferred((future, name, values[0], values[1]))
                self._unsent.append((future, name, args, kwargs, payload))
            if not self._closed:
                self._refill()
        for future, error in failed:
            if future.set_running_or_notify_cancel():
                set_outcome(future, None, error)

    # ---- writer and reader threads ----

    def _write(self) -> None:
        queue, wake, lock, conn = self._queue, self._wake, self._lock, self._conn
        while True:
            wake.wait()
            with lock:
                wake.clear()
                items = list(queue)
                queue.clear()
                self._writing = bool(items)
                if not items and (self._crashed or self._closed):
                    return
            if _Deferred in map(type, items):
                items = [self._encode_deferred(item) if type(item) is _Deferred else item for item in items]
            try:
                stop = wire.send_batches(items, conn)
            except OSError:
                stop = True  # the child is gone: the reader fails what is unfinished
            with lock:
                self._writing = False
                if stop:
                    self._closed = True
                    return

    def _encode_deferred(self, item: _Deferred) -> child.Payload:
        """Pickle a call on the writer thread; one that cannot be pickled fails its future here
        and travels as a placeholder the child answers without running anything."""
        future, name, args, kwargs = item
        payload = self._encode(name, args, kwargs, future)
        return child.SKIP if payload is None else payload

    def _read(self) -> None:
        pending, names, recv, loads = self._pending, self._names, child.receiver(self._conn), pickle.loads
        tag, skip = child.TAG.unpack_from, child.TAG.size
        pid, lock = self.pid, self._lock
        claims, sent = self.claims, self._sent
        alive = _ExitWatch(self._conn.fileno(), pid)
        try:
            while recv.buffered() or alive():
                data = recv()
                index, sender, status = tag(data)
                records = loads(memoryview(data)[skip:]) if index < 0 else (data,)
                for record in records:
                    index, sender, status = tag(record)
                    if index != self._finished or sender != pid or not pending:
                        raise _Stray(self._stray_text(index, sender))
                    future = pending.popleft()
                    name = names.popleft()
                    self._finished += 1
                    if claims:
                        sent.popleft()
                        if future is None:  # taken back (withdraw): the child skipped it
                            with lock:
                                self._taken_back -= 1
                            continue
                    if status == child.CANCELLED:
                        force_cancel(future)
                        continue
                    if status == child.SKIPPED:
                        continue  # its future failed when it could not be pickled
                    try:
                        value = loads(memoryview(record)[skip:])
                    except Exception as exc:
                        error = wire.unloadable_result(self._where(name), record[skip:], exc)
                        set_outcome(future, None, error)
                        continue
                    result, error = wire.decode_outcome(status, value, self._where, name)
                    set_outcome(future, result, error)
                # the caller alone decides how long a result lives: keep no reference to it
                future = value = result = error = None
                del data, records, record
                if self._unsent and len(pending) <= self.window // 2:
                    with lock:
                        self._refill(from_reader=True)
                elif not pending and self.listener is not None and not self._held:
                    self._notify_idle()
        except (EOFError, OSError):
            pass
        except _Stray as exc:
            self._broken = str(exc)
            sys.stderr.write(f"concurry: {exc}\n")
            self._process.kill()
        except Exception as exc:  # a protocol error must not strand futures either
            sys.stderr.write(f"concurry: process worker {self.name} reader failed: {exc!r}\n")
        alive.close()
        self._on_child_gone()

    def _where(self, name: str) -> str:
        return f"{self.cls.__qualname__}.{name} (process worker {self.name})"

    def _stray_text(self, index: int, sender: int) -> str:
        expected = f"call #{self._finished}" if self._pending else "no result"
        return (
            f"process worker {self.name} (pid {self.pid}) is broken: it sent a result for call #{index} "
            f"from pid {sender} where {expected} was expected (did a method fork a process that "
            "returned into the worker's loop?); its unfinished calls fail"
        )

    def _on_child_gone(self) -> None:
        """The child is gone: reap it, fail or cancel everything unfinished, release."""
        # First unblock any write stuck on a full socket that nobody reads any more (a process
        # the child started may still hold the other end); such a writer may hold our lock.
        with socket.fromfd(self._conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._reap(deadline=time.monotonic() + 5.0)
        with self._lock:
            self._closed = True
            killed_by_stop = self._killing
            crashed = not killed_by_stop and (bool(self._pending) or not self._stopped)
            self._crashed = crashed
            waiting = [entry[0] for entry in (*self._unsent, *self._held) if entry[0] is not STOP]
            unfinished = [f for f in self._pending if f is not None] + waiting
            self._pending.clear()
            self._names.clear()
            self._sent.clear()
            self._taken_back = 0
            self._unsent.clear()
            self._held.clear()
            self._queue.clear()
            self._wake.set()
        if crashed and unfinished:
            error_text = self._broken or (
                f"process worker {self.name} (pid {self.pid}) {describe_exit(self._exit_code)} "
                f"with {len(unfinished)} unfinished call(s)"
            )
            for future in unfinished:
                set_outcome(future, None, WorkerCrashedError(error_text))
        else:
            for future in unfinished:
                force_cancel(future)
        if crashed:
            self._notify_died()
        writer = self._writer
        if writer is not None and writer is not threading.current_thread():
            join(writer)
        with self._lock:
            self._conn.close()
            self._close_control()
        _live.discard(self)

    def _reap(self, deadline: float) -> None:
        """Wait for the child until ``deadline``, then kill it; never leaves a zombie."""
        if self._reaped:
            return
        process = self._process
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self._exit_code = process.returncode
        self._reaped = True
        child_reaped(process)

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
            if cancel_futures:
                cancelled = [e[0] for e in (*self._unsent, *self._held) if e[0] is not STOP]
                self._unsent.clear()
                self._held.clear()
                if not self._control.closed:
                    with _page_lock(self._lock_fd):  # with claims: exact, else a close guess
                        child._INT.pack_into(self._control, child.WATERMARK, self._seq)
                        if self.claims:
                            first = child._INT.unpack_from(self._control, child.CLAIMED)[0]
                        else:  # calls after the one the child is running are skipped there
                            first = child._INT.unpack_from(self._control, child.STARTING)[0] + 1
                    skip_from = max(0, first - self._finished)
                    cancelled += [f for f in list(self._pending)[skip_from:] if f is not None]
            if self._held:
                self._held.append((STOP, None, None, None, (), None))
            elif self._unsent:
                self._unsent.append((STOP, None, None, None, None))
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
        waiting = [entry[0] for entry in (*self._unsent, *self._held) if entry[0] is not STOP]
        for future in [f for f in self._pending if f is not None] + waiting:
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


class _Deferred(tuple):
    """``(future, name, args, kwargs)`` of a call the writer thread pickles."""

    __slots__ = ()


class _Stray(Exception):
    """The child sent an outcome that belongs to no call we expect."""


class _ExitWatch:
    """A check to make before each read: block until the socket has data (True) or the child
    has exited with nothing left to read (False).

    End-of-file alone is not enough: a process the user's code forked or started inside the
    worker may hold a copy of the socket, which then never closes. A Linux pidfd tells us when
    the child itself is gone; where there is none, end-of-file is what we have.
    """

    def __init__(self, fd: int, pid: int):
        self.fd = fd
        self.pidfd: int | None = None
        try:
            self.pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # not Linux, or the child is gone already (EOF tells)
            return
        self.poller = select.poll()
        self.poller.register(fd, select.POLLIN)
        self.poller.register(self.pidfd, select.POLLIN)

    def __call__(self) -> bool:
        if self.pidfd is None:
            return True
        return any(fd == self.fd for fd, _ in self.poller.poll())

    def close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
