"""The main loop of a process worker's child (``mode="process"``).

The parent starts a fresh interpreter (or forks) with one end of a socket pair. Over it the
child receives, in order: the worker class and its constructor arguments (one cloudpickle
message), then calls, either one pickled ``(name, args, kwargs)`` tuple or a pickled list of
such payloads (a batch), and finally ``None`` (stop). It answers, in the same order, one
outcome per call: a record, or a batch of records. A record is a ``TAG`` (the call's index,
the pid that ran it, the status) followed by the pickled value, so the parent can check that
each outcome belongs to the call it expects (a stray one, e.g. from a process the user's method
forked that returned into this loop, breaks the worker loudly instead of answering another
call) and can fail just that call if the value cannot be unpickled there. A batch is a ``TAG``
with index -1 followed by a pickled list of records.

A small shared page (``control``) lets the parent cancel calls that have not started
(``stop(cancel_futures=True)``) while one is running: the child writes the index of the call
it is starting, the parent writes a watermark below which unstarted calls are skipped.

With *claims* on (the parent sets ``CLAIMS``; pools balancing by ``active`` do), the parent may
also take back calls it sent that have not started: it writes a range of indices to skip, and
each call is claimed before it starts, both under a lock on the page's file (``fcntl.lockf``:
between processes, and released by the kernel if the holder dies), so a call is either started
here or taken back, never both.

Imports stay light: the user's class pulls in pydantic and friends only if it needs them.
"""

from __future__ import annotations

import mmap
import os
import pickle
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

# outcome statuses
OK = 0
ERROR = 1  # value: (exception pickle or None, type name, text, child traceback)
CANCELLED = 2
FUTURE = 3  # the method returned a future: value is that future's own (status, value)
SKIPPED = 4  # answers SKIP: a call the parent could not pickle (and failed itself)

READY = "ready"
_BATCH_SECONDS = 0.001  # results of a batch are held back at most this long
_BIG = 64 * 1024  # outcomes at least this big are sent on their own, not copied into a batch
# the control page: int64 fields at these offsets
STARTING = 0  # index of the call starting (written by the child)
WATERMARK = 8  # calls below this index are skipped (stop(cancel_futures=True))
SKIP_FROM, SKIP_TO = 16, 24  # with claims: calls in [SKIP_FROM, SKIP_TO) were taken back
CLAIMS = 32  # 1: claim each call under the page's lock before starting it
CLAIMED = 40  # with claims: how many calls were claimed (the next unclaimed index)
_CONTROL_SIZE = 48
_INT = struct.Struct("q")
TAG = struct.Struct("<qiB")  # (call index, or -1 for a batch; sender pid; status)
_HEADER = struct.Struct("!i")
_BIG_HEADER = struct.Struct("!iQ")


class _Chunks(list):
    """A file for ``Pickler`` that keeps what it is given: large ``bytes`` arrive uncopied."""

    write = list.append


Payload = bytes | list  # one pickle: a bytes object, or the chunks of a large one


def dump(value: Any, pickler: type[pickle.Pickler] = pickle.Pickler) -> Payload:
    """Pickle ``value`` without copying large buffers; ``bytes`` when it fits in one chunk."""
    chunks = _Chunks()
    pickler(chunks, 5).dump(value)
    return chunks[0] if len(chunks) == 1 else list(chunks)


def dumps(value: Any) -> Payload:
    """Plain pickle, or cloudpickle for what plain pickle cannot do (lambdas, local classes)."""
    try:
        return dump(value)
    except Exception:
        import cloudpickle

        return cloudpickle.dumps(value, protocol=5)


def size_of(payload: Payload) -> int:
    return len(payload) if type(payload) is bytes else sum(memoryview(c).nbytes for c in payload)


def write_chunks(fd: int, chunks: list) -> None:
    """Send one message made of ``chunks`` in ``Connection``'s framing, with gathered writes."""
    size = sum(memoryview(c).nbytes for c in chunks)
    header = _HEADER.pack(size) if size <= 0x7FFFFFFF else _BIG_HEADER.pack(-1, size)
    views = [memoryview(header)] + [memoryview(c).cast("B") for c in chunks]
    while views:
        written = os.writev(fd, views[:512])
        while views and written >= views[0].nbytes:
            written -= views[0].nbytes
            views.pop(0)
        if written:
            views[0] = views[0][written:]


class Receiver:
    """``conn.recv_bytes`` with fewer system calls and copies.

    Small messages: one ``read`` fetches the header, the message and often the next ones
    (``Connection`` reads header and body separately). Large ones are read straight into a
    buffer of the right size (``Connection`` collects them in a ``BytesIO``). Same framing.
    """

    __slots__ = ("buffer", "fd")

    def __init__(self, conn: Connection):
        self.fd = conn.fileno()
        self.buffer = b""

    def buffered(self) -> bool:
        """Is a whole message already here (so reading will not block)?"""
        buffer = self.buffer
        if len(buffer) < 4:
            return False
        (size,) = _HEADER.unpack_from(buffer)
        return size >= 0 and len(buffer) >= 4 + size

    def __call__(self) -> bytes | bytearray:
        buffer, fd = self.buffer, self.fd
        while len(buffer) < 4:
            buffer = self._more(buffer, fd)
        (size,) = _HEADER.unpack_from(buffer)
        start = 4
        if size == -1:
            while len(buffer) < 12:
                buffer = self._more(buffer, fd)
            (size,) = struct.unpack_from("!Q", buffer, 4)
            start = 12
        end = start + size
        if len(buffer) >= end:
            self.buffer = buffer[end:]
            return buffer[start:end]
        if size < _BIG:
            while len(buffer) < end:
                buffer = self._more(buffer, fd)
            self.buffer = buffer[end:]
            return buffer[start:end]
        message = bytearray(size)  # large: read the rest in place
        got = len(buffer) - start
        message[:got] = buffer[start:]
        self.buffer = b""
        view = memoryview(message)
        while got < size:
            n = os.readv(fd, [view[got:]])
            if not n:
                raise EOFError
            got += n
        return message

    def _more(self, buffer: bytes, fd: int) -> bytes:
        data = os.read(fd, _BIG)
        if not data:
            raise EOFError
        self.buffer = buffer = buffer + data if buffer else data
        return buffer


def receiver(conn: Connection) -> Receiver:
    return Receiver(conn)


def send(conn: Connection, payload: Payload) -> None:
    if type(payload) is bytes:
        conn.send_bytes(payload)
    else:
        write_chunks(conn.fileno(), payload)


def encode_error(exc: BaseException) -> tuple:
    """An exception as it travels: its pickle if it survives the round trip, plus its text."""
    from ..remote_traceback import format_worker_traceback

    text = str(exc)
    tb = format_worker_traceback(exc)  # the user's frames, with their source lines
    try:
        data: Any = dumps(exc)
        if type(data) is list:
            data = b"".join(data)
        pickle.loads(data)
    except Exception:
        data = None
    return (data, f"{type(exc).__module__}.{type(exc).__qualname__}", text, tb)


def _outcome_of_future(value: Any) -> tuple:
    try:
        return (OK, value.result())
    except BaseException as exc:
        return (ERROR, encode_error(exc))


_PLAIN = (int, float, str, bytes, bool, list, tuple, dict)


def _is_future(value: Any) -> bool:
    if type(value) in _PLAIN:
        return False
    import concurrent.futures

    return isinstance(value, concurrent.futures.Future) or type(value).__module__ == "concurry.futures"


_NONE = pickle.dumps(None, protocol=5)
SKIP = pickle.dumps("concurry-skip", protocol=5)  # stands in for a call the parent could not pickle


def encode_outcome(index: int, pid: int, status: int, value: Any, where: tuple) -> Payload:
    """One outcome record; an unpicklable result becomes a ``TypeError`` naming method and type.
    ``where`` is ``(class, method name, args)``, to name the call (or ``submit``'s function)."""
    if status == OK and value is not None and _is_future(value):
        status, value = FUTURE, _outcome_of_future(value)
    try:
        data = _NONE if value is None else dumps(value)
    except Exception as exc:
        shown = value[1] if status == FUTURE else value
        from ..remote_traceback import call_name

        error = TypeError(
            f"{call_name(*where)} returned a value of type {type(shown).__qualname__} that cannot be "
            f"pickled to send it back to the caller: {exc}"
        )
        status, data = ERROR, pickle.dumps(encode_error(error), protocol=5)
    if type(data) is bytes:
        return TAG.pack(index, pid, status) + data
    return [TAG.pack(index, pid, status), *data]


class _Sender:
    """Collects outcomes and writes them, batched while more calls of a batch are waiting."""

    def __init__(self, conn: Connection, pid: int):
        self.conn = conn
        self.held: list[bytes] = []
        self.since = 0.0
        self.batch_tag = TAG.pack(-1, pid, OK)

    def add(self, payload: Payload, more: bool) -> None:
        if type(payload) is not bytes or len(payload) >= _BIG:
            self.flush()
            _flush_std_streams()
            send(self.conn, payload)
            return
        if not self.held:
            self.since = time.perf_counter()
        self.held.append(payload)
        if not more or time.perf_counter() - self.since > _BATCH_SECONDS:
            self.flush()

    def flush(self) -> None:
        held = self.held
        if not held:
            return
        self.held = []
        _flush_std_streams()
        if len(held) == 1:
            self.conn.send_bytes(held[0])
        else:
            self.conn.send_bytes(self.batch_tag + pickle.dumps(held, protocol=5))


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def close_fds_except(keep: set[int]) -> None:
    """Close every descriptor but ``keep`` (a forked child must not hold other workers' pipes)."""
    low = 0
    for fd in sorted(keep):
        if fd > low:  # closerange(a, a) would close everything
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def _watch_parent(parent_pid: int) -> None:
    """Exit if the parent dies while a long call keeps the loop from seeing the closed pipe."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(1)


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Make sure this process never outlives ``parent_pid``.

    On Linux the kernel kills us (``SIGKILL``) the moment the parent dies, even inside a long
    C call that holds the GIL, and no thread wakes up for it. Elsewhere (or if ``prctl`` is
    refused) a watcher thread polls ``getppid()``, which needs the GIL.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0:
                # the parent may have died before prctl: then we were already reparented
                if os.getppid() != parent_pid:
                    os._exit(1)
                return
        except (OSError, AttributeError, ImportError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="concurry-watch", daemon=True).start()


def serve(fd: int, control_fd: int, parent_pid: int) -> None:
    """Run one worker: build the instance, then run calls until stop or the pipe closes."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    die_with_parent(parent_pid)
    conn = Connection(fd)
    control = mmap.mmap(control_fd, _CONTROL_SIZE)
    try:
        runtime = _construct(conn)
        if runtime is None:
            return
        _loop(conn, runtime, control, control_fd)
    finally:
        _flush_std_streams()
        conn.close()
        os.close(control_fd)


def _claimer(control: mmap.mmap, fd: int) -> Callable[[int], bool]:
    """``claim(index) -> run it?``: under the page's lock, skip a call taken back (or below
    the watermark), else record it as claimed so the parent can no longer take it back."""
    import fcntl

    lockf, unpack_from, pack_into = fcntl.lockf, _INT.unpack_from, _INT.pack_into

    def claim(index: int) -> bool:
        lockf(fd, fcntl.LOCK_EX)
        try:
            if index < unpack_from(control, WATERMARK)[0] or (
                unpack_from(control, SKIP_FROM)[0] <= index < unpack_from(control, SKIP_TO)[0]
            ):
                return False
            pack_into(control, CLAIMED, index + 1)
            return True
        finally:
            lockf(fd, fcntl.LOCK_UN)

    return claim


def _construct(conn: Connection) -> Any:
    try:
        data = conn.recv_bytes()
    except (EOFError, OSError):
        return None
    try:
        cls, args, kwargs, unwrap = pickle.loads(data)
        del data
        from ..runtime import Runtime

        runtime = Runtime(cls, args, kwargs, unwrap)
    except BaseException as exc:
        _flush_std_streams()
        conn.send_bytes(pickle.dumps((ERROR, encode_error(exc)), protocol=5))
        return None
    _flush_std_streams()
    conn.send_bytes(pickle.dumps((OK, READY), protocol=5))
    return runtime


def _loop(conn: Connection, runtime: Any, control: mmap.mmap, control_fd: int) -> None:
    cls = type(runtime.instance)
    invoke = runtime.invoke
    recv = receiver(conn)
    loads = pickle.loads
    pack_into, unpack_from = _INT.pack_into, _INT.unpack_from
    me = [os.getpid()]  # a process forked by the user's code updates its copy (and is told apart)
    os.register_at_fork(after_in_child=lambda: me.__setitem__(0, os.getpid()))
    sender = _Sender(conn, me[0])
    claim = _claimer(control, control_fd) if unpack_from(control, CLAIMS)[0] else None
    index = 0
    try:
        while True:
            try:
                data = recv()
            except (EOFError, OSError):
                return  # the parent closed the pipe (or died): no orphans
            try:
                message = loads(data)
            except BaseException as exc:  # one call whose arguments cannot be rebuilt here
                message = exc
            if message is None:
                return
            batch = message if type(message) is list else [message]
            last = len(batch) - 1
            for position, item in enumerate(batch):
                name, args = "?", ()
                pack_into(control, STARTING, index)
                if claim is not None:
                    skipped = not claim(index)
                else:
                    skipped = index < unpack_from(control, WATERMARK)[0]
                if skipped:
                    payload = TAG.pack(index, me[0], CANCELLED) + _NONE
                elif item == SKIP or type(item) is str:  # in a batch, or alone (then unpickled)
                    payload = TAG.pack(index, me[0], SKIPPED) + _NONE
                else:
                    try:
                        if isinstance(item, BaseException):
                            raise item
                        name, args, kwargs = loads(item) if type(item) is bytes else item
                        status, value = OK, invoke(name, args, kwargs)
                    except BaseException as exc:
                        status, value = ERROR, encode_error(exc)
                    payload = encode_outcome(index, me[0], status, value, (cls, name, args))
                    del value
                index += 1
                sender.add(payload, position < last)
            del batch, message, data, item
    finally:
        sender.flush()
        runtime.close()
        control.close()


def main(fd: int, control_fd: int, parent_pid: int) -> None:
    """Entry point of a spawned child (see ``process_launch.BOOTSTRAP``).

    After the loop, exit handlers run (workers the instance created are stopped), then the
    process exits without waiting for threads the user's code may have left running.
    """
    code = 0
    try:
        serve(fd, control_fd, parent_pid)
    except BaseException:
        code = 1
        traceback.print_exc()
    finally:
        import atexit

        atexit._run_exitfuncs()
        _flush_std_streams()
        os._exit(code)
