"""The main loop of a process worker's child (``mode="process"``).

The parent starts a fresh interpreter (or forks) with one end of a socket pair and a control
page; what travels over them, and how it is framed, is in ``process_wire``. The child builds
the instance, then answers every call, in order, with one outcome record.

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
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from .process_wire import BIG as _BIG
from .process_wire import (
    CANCELLED,
    CLAIMED,
    CLAIMS,
    CONTROL_SIZE,
    ERROR,
    FUTURE,
    INT,
    OK,
    READY,
    SKIP,
    SKIP_FROM,
    SKIP_TO,
    SKIPPED,
    STARTING,
    STOPPING,
    TAG,
    WATERMARK,
    Payload,
    dumps,
    receiver,
    send,
)
from .process_wire import NONE as _NONE

_BATCH_SECONDS = 0.001  # results of a batch are held back at most this long


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
    control = mmap.mmap(control_fd, CONTROL_SIZE)
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

    lockf, unpack_from, pack_into = fcntl.lockf, INT.unpack_from, INT.pack_into

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
        cls, args, kwargs, call_options = pickle.loads(data)
        del data
        from ..runtime import Runtime

        runtime = Runtime(cls, args, kwargs, call_options)
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
    pack_into, unpack_from = INT.pack_into, INT.unpack_from
    me = [os.getpid()]  # a process forked by the user's code updates its copy (and is told apart)
    os.register_at_fork(after_in_child=lambda: me.__setitem__(0, os.getpid()))
    sender = _Sender(conn, me[0])
    claim = _claimer(control, control_fd) if unpack_from(control, CLAIMS)[0] else None
    runtime.poll_stop = lambda: unpack_from(control, STOPPING)[0] != 0  # read only in back-offs
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
