"""Starting and stopping the many backends of a pool at once, in parallel, so that N slow
``__init__``s or N stop deadlines cost about as much as one.
"""

from __future__ import annotations

import itertools
import sys
import threading

from .backends import Backend

_pool_counter = itertools.count(1)


def pool_name(cls: type) -> str:
    return f"{cls.__name__}-pool#{next(_pool_counter)}"


def start_backends(backends: list[Backend]) -> tuple[list[Backend], BaseException | None]:
    """Start all backends in parallel; return the ones that started and the first ``__init__`` error.

    Backends that can (process) are launched all at once, then waited on; others are started
    from helper threads so that slow ``__init__``s overlap.
    """
    errors: list[BaseException | None] = [None] * len(backends)
    started: list[bool] = [False] * len(backends)
    if all(hasattr(b, "launch") and hasattr(b, "wait_ready") for b in backends):
        launched = []
        for i, backend in enumerate(backends):
            try:
                backend.launch()
            except BaseException as exc:
                errors[i] = exc
                break
            launched.append(i)
        for i in launched:
            try:
                backends[i].wait_ready()
                started[i] = True
            except BaseException as exc:
                errors[i] = exc
    else:

        def start(i: int) -> None:
            try:
                backends[i].start()
                started[i] = True
            except BaseException as exc:
                errors[i] = exc

        helpers = [threading.Thread(target=start, args=(i,), daemon=True) for i in range(1, len(backends))]
        for thread in helpers:
            thread.start()
        start(0)
        for thread in helpers:
            thread.join()
    ok = [b for b, s in zip(backends, started, strict=True) if s]
    return ok, next((e for e in errors if e is not None), None)


def stop_backends(backends: list[Backend], timeout: float | None, cancel_futures: bool) -> None:
    """Stop backends in parallel, each with the same deadline; always returns."""

    def stop(backend: Backend) -> None:
        try:
            backend.stop(timeout, cancel_futures, True)
        except Exception:
            pass

    if len(backends) == 1 or sys.is_finalizing():  # (a thread started at exit never runs)
        for backend in backends:
            stop(backend)
        return
    helpers = []
    for backend in backends:
        try:
            thread = threading.Thread(target=stop, args=(backend,), daemon=True, name="concurry-pool-stop")
            thread.start()
            helpers.append(thread)
        except RuntimeError:  # interpreter shutting down: no new threads
            stop(backend)
    for thread in helpers:
        thread.join()
