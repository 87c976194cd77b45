"""The parent's side of the process worker's wire format (the child's side is in
``process_child``): pickling calls (plain pickle, cloudpickle for ``__main__`` objects and
lambdas), batching queued calls into messages, rebuilding outcomes and errors, and naming what
cannot be pickled.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from multiprocessing.connection import Connection
from types import FunctionType
from typing import Any

from ..futures import SyncFuture
from ..remote_traceback import with_source_lines
from . import process_child as child

STOP = object()  # marks the stop message in the write queue and the held queue
_STOP_MESSAGE = pickle.dumps(None)
_BATCH_MAX_BYTES = 1 << 20


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
    if status == child.OK:
        return value, None
    if status == child.ERROR:
        return None, decode_error(value, where(name))
    if status == child.FUTURE:
        inner, error = decode_outcome(*value, where, name)
        return SyncFuture(inner, error), None
    return None, None  # CANCELLED: handled by the caller


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
            child.write_chunks(conn.fileno(), item)
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


def first_failure(futures: list) -> BaseException | None:
    for future in futures:
        if future.cancelled():
            import concurrent.futures as cf

            return cf.CancelledError()
        error = future.exception()
        if error is not None:
            return error
    return None


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
