"""The interface every backend implements, and the few rules they all share."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import WorkerStoppedError
from ..futures import BaseFuture, ConcurrentFuture
from ..options import WorkerOptions


class BackendListener(Protocol):
    """What a pool implements to hear from its backends (called from the backends' threads)."""

    def worker_idle(self, backend: Backend) -> None:
        """``backend`` has just finished its last unfinished call."""

    def worker_died(self, backend: Backend) -> None:
        """``backend``'s worker died on its own (``backend.crashed`` is now True)."""


class Backend(ABC):
    """One worker's transport.

    Invariants every backend keeps:
    - ``start()`` returns once the instance exists, or raises the error its ``__init__`` raised.
    - ``submit()`` never blocks on the worker; after ``stop()`` began it raises ``WorkerStoppedError``.
    - every future handed to ``submit()`` ends resolved, failed or cancelled, even if the worker
      dies or ignores the stop deadline.
    - ``stop()`` is idempotent, always returns, and releases the thread/loop/process/actor.
    """

    #: Set by a pool before ``start()``: told (from the backend's own threads) when this backend
    #: goes idle or dies, so the pool can hand it more work or replace it at once.
    listener: BackendListener | None = None
    #: Set by a pool balancing by ``active`` (before ``start()``): make calls already handed to
    #: the worker, not yet started, takeable by ``withdraw()`` where the transport can.
    claims: bool = False

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

    # Starting in two steps, so a pool starts N workers in parallel: ``launch()`` begins the
    # start and returns, ``wait_ready()`` finishes it (raising the ``__init__`` error), and
    # ``connection`` (after ``launch()``), if not None, is readable once ``wait_ready()`` would
    # not block, so a pool can take its workers as they become ready. By default the whole
    # ``start()`` runs on a helper thread between the two.

    def launch(self) -> None:
        """Begin starting the worker without waiting for its ``__init__``."""
        self._launch_error: BaseException | None = None

        def start() -> None:
            try:
                self.start()
            except BaseException as exc:
                self._launch_error = exc

        self._launcher = threading.Thread(target=start, name=f"concurry-start-{self.name}", daemon=True)
        self._launcher.start()

    def wait_ready(self) -> None:
        """Block until the instance exists; raise its ``__init__`` error if any."""
        self._launcher.join()
        if self._launch_error is not None:
            raise self._launch_error

    @property
    def connection(self) -> Any:
        """After ``launch()``: an object ``multiprocessing.connection.wait`` accepts, readable
        once ``wait_ready()`` would not block; None if the backend has none."""
        return None

    @abstractmethod
    def submit(
        self, name: str, args: tuple, kwargs: dict, future: ConcurrentFuture | None = None
    ) -> BaseFuture:
        """Hand one call to the worker and return its future (``future`` if one is given)."""

    def caller(self, name: str) -> Callable[..., BaseFuture]:
        """A callable for one method: ``caller(*args, **kwargs) -> future``, cached by the handle.

        Each backend has one path for calls: by default this closes over ``submit``; a backend
        whose per-call work differs (``sync``, ``process``) routes ``submit`` through its own.
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

    @property
    def unfinished(self) -> int:
        """Calls handed to this backend and not finished yet (queued or running)."""
        return 0

    @property
    def crashed(self) -> bool:
        """True once the worker died on its own (not by ``stop()``); a pool replaces it."""
        return False

    def runs_on(self, thread: threading.Thread) -> bool:
        """Is ``thread`` one of this backend's own threads? User code (a method, a done
        callback) runs there, and a stop called from it must not wait for that thread."""
        return False

    def withdraw(self) -> list[tuple[ConcurrentFuture, str, tuple, dict]]:
        """Take back the calls handed to this backend that have not started.

        Each returned ``(future, name, args, kwargs)`` is guaranteed never to start here; its
        future is untouched (still pending), so a pool may hand the call to another worker.
        Backends that cannot take calls back return ``[]``.
        """
        return []

    def _notify_idle(self) -> None:
        listener = self.listener
        if listener is not None:
            listener.worker_idle(self)

    def _notify_died(self) -> None:
        listener = self.listener
        if listener is not None:
            listener.worker_died(self)

    def _begin_stop(self) -> bool:
        """Mark the backend stopped; True only for the first caller (``stop`` is idempotent)."""
        with self._stop_lock:
            if self._stopped:
                return False
            self._stopped = True
            return True

    def stopped_error(self) -> WorkerStoppedError:
        return WorkerStoppedError(f"worker {self.name} is stopped; create a new one with .init()")
