"""Worker handles: what ``init()`` returns for a single worker.

A handle exposes the user's public methods. The first access to a method builds the backend's
fast caller for it and caches it on the handle, so later calls skip ``__getattr__`` entirely.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, TypeVar

from .backends import Backend, backend_class
from .futures import BaseFuture
from .introspection import MethodInfo, describe, handle_type
from .options import WorkerOptions

_counter = itertools.count(1)
_Handle = TypeVar("_Handle", bound="WorkerHandle")

#: Leaving a ``with`` block by an exception (Ctrl-C included): calls not started are cancelled
#: and running ones get this long before the workers are released (not the whole stop timeout).
EXIT_GRACE = 1.0


def worker_name(cls: type) -> str:
    return f"{cls.__name__}#{next(_counter)}"


def check_method(cls: type, name: str, owner: str) -> None:
    """Raise ``AttributeError`` in the caller unless ``name`` is a public method of ``cls``."""
    if name.startswith("_"):
        raise AttributeError(
            f"{owner}: {name!r} is private; only public methods of {cls.__name__} can be called "
            "through a worker"
        )
    attr = getattr(cls, name, None)
    if attr is None or not callable(attr):
        methods = sorted(n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n, None)))
        what = f"{cls.__name__}.{name} is not a method" if attr is not None else (
            f"{cls.__name__} has no method {name!r}"
        )
        raise AttributeError(
            f"{owner}: {what}; "
            f"its public methods are: {', '.join(methods) or '(none)'}"
        )


def blocking_caller(caller: Callable[..., BaseFuture[Any]]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        return caller(*args, **kwargs).result()

    return call


class WorkerHandle:
    """Behaviour shared by single-worker handles and pools: method lookup, ``stop``, ``with``.

    ``engine`` is what runs the calls, a backend or a pool's core: anything with
    ``caller(name)`` and ``stop(timeout, cancel_futures, wait)``.

    For type checkers every other attribute is a method returning ``Any``: a future of the
    method's result (typing cannot say that per method), or with ``blocking`` the result itself.
    """

    def __init__(self, cls: type, engine: Any, options: WorkerOptions):
        self._engine = engine
        self._options = options
        self._callers: dict[str, Callable[..., BaseFuture[Any]]] = {}
        self._cls = cls

    def _caller(self, name: str) -> Callable[..., BaseFuture[Any]]:
        """The non-blocking caller for ``name`` (future-returning, whatever ``blocking`` says)."""
        try:
            return self._callers[name]
        except KeyError:
            caller = self._callers[name] = self._engine.caller(name)
            return caller

    @property
    def mode(self) -> str:
        return self._options.mode.value

    def __getattr__(self, name: str) -> Callable[..., Any]:
        # Public methods are class attributes of the handle class (``introspection``); this
        # serves the others (inherited from pydantic, added later) and explains mistakes.
        if name.startswith("__") or "_cls" not in self.__dict__:
            raise AttributeError(name)
        check_method(self._cls, name, repr(self))
        return self._method(MethodInfo(self._cls, name))

    def _method(self, info: MethodInfo) -> Callable[..., Any]:
        """Build the method's caller once, with the method's name, docstring and signature, and
        cache it in ``__dict__``: later accesses are a plain attribute hit."""
        caller = self._caller(info.name)
        method = describe(blocking_caller(caller) if self._options.blocking else caller, info)
        # The method carries a reference to the handle, so ``W.init().method()`` keeps a
        # temporary handle alive until the call is submitted (its __del__ stops the worker).
        method.handle = self  # type: ignore[attr-defined]
        self.__dict__[info.name] = method
        return method

    def stop(self, timeout: float | None = None, cancel_futures: bool = False) -> None:
        """Stop accepting calls; submitted calls finish (or, with ``cancel_futures``, queued ones
        are cancelled); whatever is unfinished after ``timeout`` seconds is cancelled. Idempotent."""
        self._stop(self._options.stop_timeout if timeout is None else timeout, cancel_futures, True)

    def _stop(self, timeout: float | None, cancel_futures: bool, wait: bool) -> None:
        engine = self.__dict__.get("_engine")  # absent if __init__ never ran
        if engine is not None:
            engine.stop(timeout, cancel_futures, wait)

    def __enter__(self: _Handle) -> _Handle:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Leaving the block stops the worker: calls finish within the stop timeout. On an
        exception (Ctrl-C included) calls not started are cancelled and running ones get a
        short grace, so the program ends about at once."""
        if exc_type is None:
            self.stop()
        else:
            self._stop(min(EXIT_GRACE, self._options.stop_timeout), True, True)

    def __del__(self) -> None:
        try:
            self._stop(None, False, False)
        except Exception:
            pass


class WorkerProxy(WorkerHandle):
    """A handle on one worker (thread, loop, process or actor)."""

    @property
    def _backend(self) -> Backend:
        return self._engine

    def __repr__(self) -> str:
        backend = self.__dict__.get("_engine")
        if backend is None:
            state = "running"
        elif backend.crashed:
            state = "crashed"
        else:
            state = "stopped" if backend.stopped else "running"
        name = backend.name if backend is not None else "?"
        return f"<{self._options.mode.value} worker {name} ({state})>"


def handle_class(cls: type, base: type) -> type:
    """The handle class for ``cls``: ``base``, plus any mixin the worker class asks for
    (TaskWorker), named after ``cls`` and listing its public methods (see ``introspection``)."""
    mixin = getattr(cls, "__concurry_handle_mixin__", None)
    return handle_type(cls, (base,) if mixin is None else (mixin, base))


def create_worker(cls: type, args: tuple, kwargs: dict, options: WorkerOptions) -> WorkerProxy:
    """Start one worker and return its handle; raises the instance's ``__init__`` error."""
    backend = backend_class(options.mode)(cls, args, kwargs, options, worker_name(cls))
    backend.start()
    return handle_class(cls, WorkerProxy)(cls, backend, options)
