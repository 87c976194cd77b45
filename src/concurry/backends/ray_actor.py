"""The Ray actor behind one ``mode="ray"`` worker: a ``Runtime`` and nothing else.

The actor is built from the same payload a process worker's child gets (``class_transport``:
the class by reference when importable, by value from ``__main__``), so unwrapping, retries,
limits and ``async def`` methods run inside the actor exactly as in every other mode.

A failed call raises ``CallFailed``, which carries the user's exception encoded as a process
worker sends it (its pickle, type name, text and worker-side traceback): Ray wraps it in its own
``RayTaskError``, the caller's side unwraps and rebuilds the user's exception with its original
type. Anything the method raises, ``BaseException``s included, becomes a ``CallFailed``: a
``SystemExit`` must fail the call, not end the actor (Ray takes it as the actor's exit).

Control: ``_concurry_stop`` and ``_concurry_cancel`` run in their own concurrency group
(``CONTROL``, one thread), so they reach the actor while a call runs on the default group's
thread (still one call at a time, in submission order). Stop cuts a back-off between retries
short (the call ends with its last error). Cancel takes back calls that have not started: each
call carries its worker's call number (``key``, increasing) as its Ray task name
(``"<method>#<key>"``), the actor records the highest started, and a taken-back call is skipped
when its turn comes; both under one lock, so a call is either taken back or started, never
both. (The calls therefore run on the default group's thread, not the actor's main thread.)
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import pickle
import threading
from typing import Any

import ray

from ..futures import BaseFuture, SyncFuture
from ..runtime import Runtime
from .process_child import encode_error

# the actor's concurrency groups: the stop signal's own thread, beside the calls' (the default group)
CONTROL = "concurry_control"
CONCURRENCY_GROUPS = {CONTROL: 1}


class CallFailed(Exception):
    """A call's exception on its way back from the actor (see the module docstring)."""

    @property
    def encoded(self) -> tuple:
        return self.args[0]


class RayActor:
    """Owns the user's instance; Ray runs its methods one at a time, in submission order."""

    def __init__(self, payload: bytes, paths: list[str]):
        self._runtime: Runtime | None = None
        self._init_error: tuple | None = None
        self._turns = threading.Lock()  # a call starting vs. a cancel taking calls back
        self._started = -1  # the highest call number started
        self._taken_back: set[int] = set()
        self._context = ray.get_runtime_context()  # made once: it tells each call's task name
        try:
            _extend_path(paths)
            cls, args, kwargs, call_options = pickle.loads(payload)
            self._runtime = Runtime(cls, args, kwargs, call_options)
        except BaseException as exc:  # reported by ``ready``: the actor itself must come up
            self._init_error = encode_error(exc)

    def _concurry_ready(self) -> int:
        """The actor's pid once the instance exists; raises ``CallFailed`` with its ``__init__`` error."""
        if self._init_error is not None:
            raise CallFailed(self._init_error)
        return os.getpid()

    def _concurry_call(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Run one call of a method the actor class has no task for (see ``actor_class``)."""
        return self._call(name, args, kwargs)

    def _call(self, name: str, args: tuple, kwargs: dict) -> Any:
        key = int(self._context.get_task_name().rpartition("#")[2])
        with self._turns:
            if key in self._taken_back:  # cancelled by the caller: its future is cancelled already
                self._taken_back.discard(key)
                return None
            if key > self._started:
                self._started = key
        try:
            result = self._runtime.invoke(name, args, kwargs)  # type: ignore[union-attr]
        except BaseException as exc:
            raise CallFailed(encode_error(exc)) from None
        if isinstance(result, (BaseFuture, cf.Future)) and type(result).__name__ != "RayFuture":
            result = _settled(result)  # a nested worker's future: its outcome travels back
        return result

    @ray.method(concurrency_group=CONTROL)
    def _concurry_cancel(self, keys: list[int]) -> list[int]:
        """Take back the calls among ``keys`` that have not started; returns their keys."""
        with self._turns:
            taken = [key for key in keys if key > self._started]
            self._taken_back.update(taken)
        return taken

    @ray.method(concurrency_group=CONTROL)
    def _concurry_stop(self) -> None:
        """The worker is stopping: cut a back-off short (runs beside the call in progress)."""
        if self._runtime is not None:
            self._runtime.request_stop()

    def _concurry_close(self) -> None:
        """Run the instance's own ``stop()`` (if its class has one) before the actor is killed."""
        if self._runtime is not None:
            self._runtime.request_stop()
            self._runtime.close()


# names Ray's actor classes use themselves (and a worker class's own constructors): such methods
# go through the generic task
RESERVED = frozenset({"init", "options", "remote", "bind"})


def _task(name: str) -> Any:
    def method(self: RayActor, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, args, kwargs)

    method.__name__ = method.__qualname__ = name
    return method


def actor_class(cls: type) -> type:
    """A ``RayActor`` with one task per public method of ``cls``, named after it: the method name
    is then not an argument Ray must serialize on every call, and the call's own arguments are
    the task's, so Ray resolves the ``ObjectRef``s among them before the call starts."""
    names = [
        n for n in dir(cls) if not n.startswith("_") and n not in RESERVED and callable(getattr(cls, n, None))
    ]
    return type(f"RayActor_{cls.__name__}", (RayActor,), {name: _task(name) for name in names})


def _extend_path(paths: list[str]) -> None:
    """Let the actor import what the caller can: the caller's ``sys.path`` entries that exist
    here are added after the actor's own (as a process worker gets its parent's path), so a
    class from the user's project travels by reference, as it does to a worker process."""
    import sys

    for path in paths:
        if path and path not in sys.path and os.path.isdir(path):
            sys.path.append(path)


def _settled(future: Any) -> SyncFuture:
    """A future returned by a method, waited for here and sent as a resolved future."""
    try:
        return SyncFuture(future.result())
    except BaseException as exc:
        return SyncFuture(None, exc)
