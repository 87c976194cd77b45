"""The process worker's wire format, both sides of it: what travels over the socket between the
parent and its child, how messages are framed, and the shared control page.

Over the socket the child receives, in order: the worker class and its constructor arguments
(one cloudpickle message), then calls, either one pickled ``(name, args, kwargs)`` tuple or a
pickled list of such payloads (a batch), and finally ``None`` (stop). It answers the first
message with ``(OK, READY)`` or ``(ERROR, error)``, then, in order, one outcome per call: a
record, or a batch of records. A record is a ``TAG`` (the call's index, the pid that ran it,
the status) followed by the pickled value, so the parent can check that each outcome belongs
to the call it expects (a stray one, e.g. from a process the user's method forked that
returned into the child's loop, breaks the worker loudly instead of answering another call)
and can fail just that call if the value cannot be unpickled there. A batch is a ``TAG`` with
index -1 followed by a pickled list of records. Messages use ``multiprocessing.Connection``'s
framing (a 4-byte length, or -1 and an 8-byte length); large ones go as chunks, uncopied.

The control page is a small file both processes map (see ``process_child`` for how the child
uses it): the child writes the index of the call it is starting, the parent writes a watermark
below which unstarted calls are skipped (``stop(cancel_futures=True)``) and, with claims, a
range of calls it took back.

The parent's side of decoding lives here too: rebuilding outcomes and errors, pickling calls
(plain pickle, cloudpickle for ``__main__`` objects and lambdas) and naming what cannot be
pickled. Imports stay light: the child imports this module.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import struct
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from types import FunctionType
from typing import Any

from ..futures import SyncFuture
from ..remote_traceback import with_source_lines

# ---- outcomes ----

# outcome statuses
OK = 0
ERROR = 1  # value: (exception pickle or None, type name, text, child traceback)
CANCELLED = 2
FUTURE = 3  # the method returned a future: value is that future's own (status, value)
SKIPPED = 4  # answers SKIP: a call the parent could not pickle (and failed itself)

READY = "ready"  # the child's answer to the first message once the instance exists
TAG = struct.Struct("<qiB")  # (call index, or -1 for a batch; sender pid; status)
NONE = pickle.dumps(None, protocol=5)
SKIP = pickle.dumps("concurry-skip", protocol=5)  # stands in for a call the parent could not pickle
STOP = object()  # marks the stop message in the parent's queues
_STOP_MESSAGE = pickle.dumps(None)

# ---- the control page: int64 fields at these offsets ----

STARTING = 0  # index of the call starting (written by the child)
WATERMARK = 8  # calls below this index are skipped (stop(cancel_futures=True))
SKIP_FROM, SKIP_TO = 16, 24  # with claims: calls in [SKIP_FROM, SKIP_TO) were taken back
CLAIMS = 32  # 1: claim each call under the page's lock before starting it
CLAIMED = 40  # with claims: how many calls were claimed (the next unclaimed index)
STOPPING = 48  # 1: the parent is stopping the worker (a call in a retry back-off ends now)
CONTROL_SIZE = 56
INT = struct.Struct("q")


def control_page() -> tuple[int, mmap.mmap]:
    """A new, zeroed control page: an anonymous file (its descriptor goes to the child) and our map."""
    try:
        fd = os.memfd_create("concurry-control")
    except (AttributeError, OSError):
        import tempfile

        with tempfile.TemporaryFile() as file:
            fd = os.dup(file.fileno())
    os.ftruncate(fd, CONTROL_SIZE)
    return fd, mmap.mmap(fd, CONTROL_SIZE)


@contextlib.contextmanager
def page_lock(fd: int) -> Iterator[None]:
    """The control page's cross-process lock (``fcntl.lockf``: released by the kernel if the
    holder dies); ``fd`` -1: no claims, nothing to exclude."""
    if fd < 0:
        yield
        return
    import fcntl

    fcntl.lockf(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.lockf(fd, fcntl.LOCK_UN)


# ---- framing ----

BIG = 64 * 1024  # messages at least this big are read in place (and outcomes sent on their own)
_BATCH_MAX_BYTES = 1 << 20
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


def send(conn: Connection, payload: Payload) -> None:
    if type(payload) is bytes:
        conn.send_bytes(payload)
    else:
        write_chunks(conn.fileno(), payload)


def send_batches(items: list, conn: Connection) -> bool:
    """Write queued payloads, several per message; True if the stop message was among them."""
    batch: list[bytes] = []
    size = 0
    send = conn.send_bytes
    for item in items:
        if item is STOP:
            _flush_batch(batch, send)
            send(_STOP_MESSAGE)
            return True
        if type(item) is not bytes:  # a large call, in chunks: sent on its own
            _flush_batch(batch, send)
            batch, size = [], 0
            write_chunks(conn.fileno(), item)
            continue
        if batch and size + len(item) > _BATCH_MAX_BYTES:
            _flush_batch(batch, send)
            batch, size = [], 0
        batch.append(item)
        size += len(item)
    _flush_batch(batch, send)
    return False


def _flush_batch(batch: list[bytes], send: Callable[[bytes], None]) -> None:
    if len(batch) == 1:
        send(batch[0])
    elif batch:
        send(pickle.dumps(batch, protocol=5))


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
        if size < BIG:
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
        data = os.read(fd, BIG)
        if not data:
            raise EOFError
        self.buffer = buffer = buffer + data if buffer else data
        return buffer


def receiver(conn: Connection) -> Receiver:
    return Receiver(conn)


# ---- the parent's side: rebuilding outcomes, pickling calls, naming what cannot travel ----


class RemoteTraceback(Exception):
    """The worker process's traceback, chained as ``__cause__`` where notes don't exist (3.10)."""

    def __str__(self) -> str:
        return f"\n--- traceback in the worker process ---\n{self.args[0]}"


def decode_error(value: tuple, where: str = "") -> BaseException:
    """Rebuild an exception sent by the child, with the child's traceback attached as a note.

    One the parent cannot unpickle (its class lives in a module only the child imported, or its
    unpickling raises) becomes a ``RuntimeError`` naming the method (``where``) and its type.
    """
    data, type_name, text, tb = value
    tb = with_source_lines(tb)  # lines the child could not read, if this process can
    exc: BaseException | None = None
    if data is not None:
        try:
            exc = pickle.loads(data)
        except Exception as problem:
            exc = RuntimeError(
                f"{where or 'the method'} raised {type_name}: {text} "
                f"(the exception itself cannot be unpickled here: {type(problem).__name__}: {problem})"
            )
    if not isinstance(exc, BaseException):
        exc = RuntimeError(f"{type_name}: {text}")
    try:
        exc.add_note(f"\n--- traceback in the worker process ---\n{tb.rstrip()}")
    except AttributeError:  # Python 3.10: no notes; chain it, as ProcessPoolExecutor does
        if exc.__cause__ is None:
            exc.__cause__ = RemoteTraceback(tb.rstrip())
    except Exception:
        pass
    return exc


def decode_outcome(
    status: int, value: Any, where: Callable[[str], str], name: str
) -> tuple[Any, BaseException | None]:
    """``(result, error)`` of one outcome; ``where(name)`` names the method in errors."""
    if status == OK:
        return value, None
    if status == ERROR:
        return None, decode_error(value, where(name))
    if status == FUTURE:
        inner, error = decode_outcome(*value, where, name)
        return SyncFuture(inner, error), None
    return None, None  # CANCELLED: handled by the caller


class _MainObject(Exception):
    """Raised while pickling a call that refers to ``__main__``: cloudpickle must take it."""


class ByReferencePickler(pickle.Pickler):
    """Plain pickle, refusing ``__main__`` classes, functions and instances.

    Plain pickle would write them as references the child cannot resolve (its ``__main__`` is
    not the user's script); cloudpickle sends them by value. Builtin types never reach this hook.
    """

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        module = obj.__module__ if kind is FunctionType or isinstance(obj, type) else kind.__module__
        if module == "__main__":
            raise _MainObject
        return NotImplemented


def unloadable_result(where: str, data: bytes, exc: Exception) -> RuntimeError:
    """The error for a result that reached us but cannot be unpickled here (that call only)."""
    return RuntimeError(
        f"{where} returned a value of type {pickled_type(data)} that cannot be unpickled in the "
        f"calling process: {type(exc).__name__}: {exc}"
    )


def pickled_type(data: bytes) -> str:
    """The first class or function a pickle refers to (what it builds first), for messages."""
    import pickletools

    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST"):
                return str(arg).replace(" ", ".")
            if op.name == "STACK_GLOBAL" and len(strings) >= 2:
                return f"{strings[-2]}.{strings[-1]}"
            if isinstance(arg, str):
                strings.append(arg)
    except Exception:
        pass
    return "unknown"


def type_name(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def unpicklable_part(values: tuple) -> Any:
    """The first value cloudpickle refuses (to name it in the error), else the whole tuple."""
    import cloudpickle

    for value in values:
        try:
            cloudpickle.dumps(value)
        except Exception:
            return value
    return values
