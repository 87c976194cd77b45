"""A process worker's two threads and the end of its child.

The writer thread sends queued calls in batches (pickling, first, the calls left to it). The
reader thread resolves futures in order, checking each outcome's tag (call index, sender pid)
so a stray outcome breaks the worker instead of answering another call, and refills the window
from the unsent calls. When the socket closes (or the child exits) the reader reaps the child
and settles every unfinished call: failed with ``WorkerCrashedError`` if the child died on its
own, cancelled if ``stop()`` killed it.
"""

from __future__ import annotations

import os
import pickle
import select
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from ..errors import WorkerCrashedError
from ..futures import force_cancel, set_outcome
from ..thread_exit import join
from . import process_wire as wire
from .process_exit import live
from .process_launch import child_reaped, describe_exit
from .process_queue import CallQueue, Deferred


class Transport(CallQueue):
    """The reader and writer threads of a ``ProcessBackend`` (a mixin: the state is set up by
    ``ProcessBackend.launch``)."""

    name: str
    cls: type
    pid: int
    listener: Any
    _process: Any
    _writer: threading.Thread | None
    _broken: str
    _killing: bool
    _reaped: bool
    _exit_code: int | None

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
            if Deferred in map(type, items):
                items = [self._encode_deferred(item) if type(item) is Deferred else item for item in items]
            try:
                stop = wire.send_batches(items, conn)
            except OSError:
                stop = True  # the child is gone: the reader fails what is unfinished
            with lock:
                self._writing = False
                if stop:
                    self._closed = True
                    return

    def _encode_deferred(self, item: Deferred) -> wire.Payload:
        """Pickle a call on the writer thread; one that cannot be pickled fails its future here
        and travels as a placeholder the child answers without running anything."""
        payload = self._encode(item.name, item.args, item.kwargs, item.future)
        return wire.SKIP if payload is None else payload

    def _read(self) -> None:
        pending, names, recv, loads = self._pending, self._names, wire.receiver(self._conn), pickle.loads
        tag, skip = wire.TAG.unpack_from, wire.TAG.size
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
                    if claims:  # one step for withdraw(), which counts from _finished and _seq
                        with lock:
                            future = pending.popleft()
                            name = names.popleft()
                            sent.popleft()
                            self._finished += 1
                            if future is None:  # taken back (withdraw): the child skipped it
                                self._taken_back -= 1
                                continue
                    else:
                        future = pending.popleft()
                        name = names.popleft()
                        self._finished += 1
                    if status == wire.CANCELLED:
                        force_cancel(future)
                        continue
                    if status == wire.SKIPPED:
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
            unfinished = [f for f in self._pending if f is not None] + self._waiting_futures()
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
        live.discard(self)

    def _reap(self, deadline: float) -> None:
        """Wait for the child until ``deadline``, then kill it; never leaves a zombie."""
        if self._reaped:
            return
        process = self._process
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            # Killed at a deadline of ours (a stop, interpreter exit): its calls are cancelled,
            # not failed as a crash, and a pool does not replace it.
            with self._lock:
                self._killing = True
            process.kill()
            process.wait()
        self._exit_code = process.returncode
        self._reaped = True
        child_reaped(process)


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
