"""The interface every backend implements, and the few rules they all share."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from ..errors import WorkerStoppedError
from ..futures import BaseFuture, ConcurrentFuture
from ..options import WorkerOptions


class Backend(ABC):
    """One worker's transport.

    Invariants every backend keeps:
    - ``start()`` returns once the instance exists, or raises the error its ``__init__`` raised.
    - ``submit()`` never blocks on the worker; after ``stop()`` began it raises ``WorkerStoppedError``.
    - every future handed to ``submit()`` ends resolved, failed or cancelled, even if the worker
      dies or ignores the stop deadline.
    - ``stop()`` is idempotent, always returns, and releases the thread/loop/process/actor.
    """

    def __init__(self, cls: type, args: tuple, kwargs: dict, options: WorkerOptions, name: str):
        self.cls = cls
        self.args = args
        self.kwargs = kwargs
        self.options = options
        self.name = name
        self._stopped = False
        self._stop_lock = threading.Lock()

    @abstractmethod
    def start(self) -> None:
        """Create the instance where it will live; raise its ``__init__`` error if any."""

    @abstractmethod
    def submit(
        self, name: str, args: tuple, kwargs: dict, future: ConcurrentFuture | None = None
    ) -> BaseFuture:
        """Hand one call to the worker and return its future (``future`` if one is given)."""

    def caller(self, name: str) -> Callable[..., BaseFuture]:
        """A fast callable for one method: ``caller(*args, **kwargs) -> future``.

        Backends override this with a closure that skips the generic ``submit`` plumbing.
        """
        submit = self.submit

        def call(*args: Any, **kwargs: Any) -> BaseFuture:
            return submit(name, args, kwargs)

        return call

    @abstractmethod
    def stop(self, timeout: float | None = None, cancel_futures: bool = False, wait: bool = True) -> None:
        """Stop accepting calls, let the submitted ones finish (or cancel the queued ones), release.

        ``wait=False`` only starts the shutdown (used when a handle is garbage-collected).
        """

    @property
    def stopped(self) -> bool:
        return self._stopped

    def _begin_stop(self) -> bool:
        """Mark the backend stopped; True only for the first caller (``stop`` is idempotent)."""
        with self._stop_lock:
            if self._stopped:
                return False
            self._stopped = True
            return True

    def stopped_error(self) -> WorkerStoppedError:
        return WorkerStoppedError(f"worker {self.name} is stopped; create a new one with .init()")
