"""``process`` mode: one child process per worker, one socket pair, one reader thread.

Starting: by default a fresh interpreter runs a tiny bootstrap (``python -u -c ...``) with the
parent's ``sys.path``; the worker class and its arguments follow over the socket with
cloudpickle (by value for ``__main__`` classes). The user's script is never re-run, so scripts
without a ``__main__`` guard, ``python -c`` and notebooks work. ``mp_context="fork"`` forks.

Calling: a call is pickled once in the caller's thread (plain pickle; cloudpickle for lambdas
and ``__main__`` objects). With few calls in flight the caller writes it at once; otherwise it
joins a queue that a writer thread sends in batches. One reader thread per worker resolves
futures in order (a worker runs its calls in order, so no call ids travel). Calls whose
arguments hold pending futures wait, with every later call, until those futures resolve.

Dying: the reader sees the socket close; every unfinished future fails with
``WorkerCrashedError`` and later calls raise it. The child exits when the socket closes, so it
never outlives the parent for long.
"""

from __future__ import annotations

import atexit
import collections
import os
import pickle
import select
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ..errors import WorkerCrashedError
from ..futures import BaseFuture, ConcurrentFuture, force_cancel, set_outcome
from ..runtime import call_has_futures, collect_futures, replace_futures
from . import process_child as child
from . import process_wire as wire
from .base import Backend
from .process_launch import control_page, describe_exit, start_child
from .process_wire import STOP

_DIRECT_MAX_BYTES = 8 * 1024  # the caller writes a call itself only if it is this small ...
_DIRECT_MAX_INFLIGHT = 16  # ... and this few calls are unfinished: the socket buffer holds them

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


def _reap_all(backends: list, deadline: float) -> None:
    """Wait for the children until one shared ``deadline``, then kill whatever is left."""
    for backend in backends:
        backend._reap(deadline)  # after the deadline each one is killed without waiting


class ProcessBackend(Backend):
    """A child process that owns the instance and runs calls in submission order."""

    _crashed = False
    _reader: threading.Thread | None = None

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
        self._pending: collections.deque = collections.deque()  # sent (or queued) futures, in order
        self._queue: collections.deque = collections.deque()  # payloads for the writer thread
        self._held: collections.deque = collections.deque()  # calls waiting for argument futures
        self._writing = False
        self._wake = threading.Event()
        self._seq = 0  # calls handed to the child so far (queued or written)
        self._finished = 0  # outcomes received
        self._crashed = False
        self._closed = False  # no more writes: stop message sent, or child gone
        self._killing = False  # the stop deadline passed: unfinished calls are cancelled
        self._reaped = False
        self._exit_code: int | None = None
        parent_sock, child_sock = socket.socketpair()
        control_fd, self._control = control_page()
        try:
            self._process: Any = start_child(method, child_sock.fileno(), control_fd)
        except BaseException:
            parent_sock.close()
            self._control.close()
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
        import cloudpickle

        args, kwargs = self.args, self.kwargs
        if self.options.unwrap_futures and call_has_futures(args, kwargs):
            args, kwargs = replace_futures((args, kwargs), lambda f: f.result())
        try:
            return cloudpickle.dumps((self.cls, args, kwargs, self.options.unwrap_futures), protocol=5)
        except Exception as exc:
            culprit = wire.unpicklable_part((self.cls, *args, *kwargs.values()))
            raise TypeError(
                f"cannot start process worker {self.name}: {wire.type_name(culprit)} cannot be pickled "
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
        self._control.close()
        self._reaped = True
        _live.discard(self)

    # ---- calling ----

    @property
    def crashed(self) -> bool:
        """True once the child died on its own; the pool replaces such workers."""
        return self._crashed

    @property
    def unfinished(self) -> int:
        """Calls submitted and not finished (held, queued or in the child); read by pool statistics."""
        return len(self._pending) + len(self._held)

    def submit(
        self, name: str, args: tuple, kwargs: dict, future: ConcurrentFuture | None = None
    ) -> BaseFuture:
        return self._call(name, args, kwargs, ConcurrentFuture() if future is None else future)

    def caller(self, name: str) -> Callable[..., BaseFuture]:
        call = self._call
        new_future = ConcurrentFuture

        def caller(*args: Any, **kwargs: Any) -> BaseFuture:
            return call(name, args, kwargs, new_future())

        return caller

    def _call(self, name: str, args: tuple, kwargs: dict, future: ConcurrentFuture) -> BaseFuture:
        if self._stopped or self._crashed:
            raise self._refusal()
        if self.options.unwrap_futures and (args or kwargs) and call_has_futures(args, kwargs):
            return self._hold(future, name, args, kwargs)
        payload = self._encode(name, args, kwargs, future)
        if payload is None:
            return future
        with self._lock:
            if self._stopped or self._crashed:
                raise self._refusal()
            if self._held:  # an earlier call waits for its arguments: keep actor order
                self._held.append((future, name, None, None, (), payload))
                return future
            # As in ProcessPoolExecutor: a call handed to the process is running (no cancel())
            if not future.set_running_or_notify_cancel():
                return future
            self._pending.append(future)
            self._seq += 1
            if (
                not self._queue
                and not self._writing
                and (
                    len(self._pending) == 1  # the child is idle: it reads whatever we write
                    or (
                        len(self._pending) <= _DIRECT_MAX_INFLIGHT
                        and child.size_of(payload) < _DIRECT_MAX_BYTES
                    )
                )
            ):
                try:
                    child.send(self._conn, payload)
                except OSError:
                    pass  # the child is gone: the reader fails this future
            else:
                self._queue.append(payload)
                self._wake.set()
        return future

    def _refusal(self) -> RuntimeError:
        if self._crashed:
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
            import cloudpickle

            return cloudpickle.dumps(call, protocol=5)
        except Exception as exc:
            culprit = wire.unpicklable_part((*args, *kwargs.values()))
            set_outcome(
                future,
                None,
                TypeError(
                    f"{self.cls.__qualname__}.{name}: argument of type {wire.type_name(culprit)} cannot be "
                    f"pickled to send it to process worker {self.name}: {exc}"
                ),
            )
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
        """Send, in order, every held call at the front whose argument futures are all done."""
        failed: list[tuple[ConcurrentFuture, BaseException]] = []
        with self._lock:
            held = self._held
            while held and all(dep.done() for dep in held[0][4]):
                future, name, args, kwargs, deps, payload = held.popleft()
                if future is STOP:
                    self._queue.append(STOP)
                    self._wake.set()
                    continue
                if self._crashed or not future.set_running_or_notify_cancel():
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
                    payload = self._encode(name, values[0], values[1], future)
                    if payload is None:
                        continue
                self._pending.append(future)
                self._seq += 1
                self._queue.append(payload)  # never written here: this may run on a reader thread
                self._wake.set()
        for future, error in failed:
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
            try:
                stop = wire.send_batches(items, conn)
            except OSError:
                stop = True  # the child is gone: the reader fails what is unfinished
            with lock:
                self._writing = False
                if stop:
                    self._closed = True
                    return

    def _read(self) -> None:
        pending, recv, loads = self._pending, child.receiver(self._conn), pickle.loads
        alive = _ExitWatch(self._conn.fileno(), self.pid)
        try:
            while alive():
                message = loads(recv())
                for item in message if type(message) is list else (message,):
                    future = pending.popleft()
                    self._finished += 1
                    try:
                        status, value = loads(item) if type(item) is bytes else item
                    except Exception as exc:
                        set_outcome(future, None, wire.unloadable_result(exc))
                        continue
                    if status == child.CANCELLED:
                        force_cancel(future)
                        continue
                    result, error = wire.decode_outcome(status, value)
                    set_outcome(future, result, error)
                del message, item
        except (EOFError, OSError):
            pass
        except Exception as exc:  # a protocol error must not strand futures either
            sys.stderr.write(f"concurry: process worker {self.name} reader failed: {exc!r}\n")
        alive.close()
        self._on_child_gone()

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
            unfinished = list(self._pending) + [entry[0] for entry in self._held if entry[0] is not STOP]
            self._pending.clear()
            self._held.clear()
            self._queue.clear()
            self._wake.set()
        if crashed and unfinished:
            error_text = (
                f"process worker {self.name} (pid {self.pid}) {describe_exit(self._exit_code)} "
                f"with {len(unfinished)} unfinished call(s)"
            )
            for future in unfinished:
                set_outcome(future, None, WorkerCrashedError(error_text))
        else:
            for future in unfinished:
                force_cancel(future)
        writer = getattr(self, "_writer", None)
        if writer is not None and writer is not threading.current_thread():
            writer.join()
        with self._lock:
            self._conn.close()
            self._control.close()
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

    # ---- stopping ----

    def stop(self, timeout: float | None = None, cancel_futures: bool = False, wait: bool = True) -> None:
        reader = self._reader
        if not self._begin_stop():
            if wait and reader is not None and reader is not threading.current_thread():
                reader.join(timeout)
            return
        if reader is None:  # never started (launch failed, or wait_ready not called)
            if hasattr(self, "_process") and not self._reaped:
                self._fail_start()
            return
        cancelled: list[ConcurrentFuture] = []
        with self._lock:
            if cancel_futures:
                cancelled = [entry[0] for entry in self._held]
                self._held.clear()
                if not self._control.closed:
                    child._INT.pack_into(self._control, 8, self._seq)
                    started = child._INT.unpack_from(self._control, 0)[0]
                    # calls after the one the child is running are skipped there
                    skip_from = max(0, started + 1 - self._finished)
                    cancelled += list(self._pending)[skip_from:]
            if self._held:
                self._held.append((STOP, None, None, None, (), None))
            else:
                self._queue.append(STOP)
                self._wake.set()
        for future in cancelled:
            force_cancel(future)
        if not wait or reader is threading.current_thread():
            return
        reader.join(timeout)
        if reader.is_alive():
            with self._lock:
                self._killing = True
            self._process.kill()
            reader.join()


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
