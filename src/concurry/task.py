"""Running plain functions: ``TaskWorker``, ``@task`` and ``Executor`` (SPEC §5).

A ``TaskWorker`` is an ordinary worker whose one method, ``submit(fn, *args)``, calls ``fn``
where the worker lives. Its handles (single or pool) are real ``concurrent.futures.Executor``s.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .errors import WorkerStoppedError
from .futures import BaseFuture, remaining
from .options import validate_options
from .progress import check_progress, progress_bar
from .proxy import EXIT_GRACE, WorkerHandle
from .worker import Worker


class TaskHandleMixin(cf.Executor):
    """Executor API on top of a worker handle or pool (mixed in by ``handle_class``)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the worker; returns a future (the result if ``blocking``)."""
        future = self._caller("submit")(fn, *args, **kwargs)
        return future.result() if self._options.blocking else future

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        progress: Any = False,
    ) -> Iterator[Any]:
        """Like ``Executor.map``: results in input order; the first failure is raised when reached.

        ``chunksize`` is accepted for compatibility; every item is its own call.
        """
        check_progress(progress, "map")
        submit = self._caller("submit")
        futures = [submit(fn, *args) for args in zip(*iterables, strict=False)]  # like Executor.map
        return _results_in_order(futures, timeout, progress)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """``concurrent.futures`` semantics: ``wait=False`` returns at once; calls still finish."""
        self._stop(None, cancel_futures, wait)

    # A worker handle's ``with`` (stop timeout, prompt release on an exception), not
    # ``Executor.__exit__``'s unbounded wait, which the MRO would otherwise pick.
    __enter__ = WorkerHandle.__enter__
    __exit__ = WorkerHandle.__exit__


def _results_in_order(futures: list[BaseFuture], timeout: float | None, progress: Any) -> Iterator[Any]:
    """Yield each future's result in order, holding none of them once it is handed over.

    As with ``concurrent.futures``, a result the caller drops must be freed at once (a map over
    many large results must not keep them all): each future is popped before its result is
    yielded, and no local variable keeps the value while the generator is suspended.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    bar = progress_bar(progress, len(futures), "map")
    futures.reverse()  # popped from the end: the next one is last
    try:
        while futures:
            yield _result(futures.pop(), remaining(deadline), timeout, bar)
        if bar is not None:
            bar.success()
    except BaseException:
        for future in futures:
            future.cancel()
        if bar is not None:
            bar.failure()
        raise


def _result(future: BaseFuture, seconds: float | None, timeout: float | None, bar: Any) -> Any:
    """One result for ``_results_in_order``; a future that failed or timed out is cancelled (a
    no-op unless it has not started), since it is no longer in the list cancelled on failure."""
    try:
        result = future.result(seconds)
    except cf.TimeoutError:
        future.cancel()
        raise TimeoutError(f"map: timed out after {timeout} s") from None
    except BaseException:
        future.cancel()
        raise
    if bar is not None:
        bar.update(1)
    return result


class TaskWorker(Worker):
    """A worker that runs whatever function it is given: ``tw.submit(fn, *args, **kwargs)``."""

    __concurry_handle_mixin__ = TaskHandleMixin

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)


def Executor(**options: Any) -> Any:
    """A ``TaskWorker`` (or pool) with these options: ``Executor(mode="thread", max_workers=4)``."""
    return TaskWorker.options(**options).init()


class TaskFunction:
    """A function made concurrent by ``@task``: calling it returns a future.

    The worker (or pool) behind it starts on the first call and lives until ``stop()``.
    """

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self._options = options
        self._executor: Any = None
        self._stopped = False
        self._lock = threading.Lock()

    def _worker(self) -> Any:
        executor = self._executor
        if executor is None:
            with self._lock:
                if self._stopped:
                    raise WorkerStoppedError(f"task {self.fn.__name__} is stopped")
                if self._executor is None:
                    self._executor = TaskWorker.options(**self._options).init()
                executor = self._executor
        return executor

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._worker().submit(self.fn, *args, **kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        return self._worker().submit(self.fn, *args, **kwargs)

    def map(
        self, *iterables: Iterable[Any], timeout: float | None = None, progress: Any = False
    ) -> Iterator[Any]:
        return self._worker().map(self.fn, *iterables, timeout=timeout, progress=progress)

    def stop(self, timeout: float | None = None, cancel_futures: bool = False) -> None:
        with self._lock:
            self._stopped = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.stop(timeout, cancel_futures)

    def __enter__(self) -> TaskFunction:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        executor = self._executor
        if exc_type is None or executor is None:
            self.stop()
        else:  # an exception (Ctrl-C included): cancel what has not started, release soon
            self.stop(min(EXIT_GRACE, executor._options.stop_timeout), True)

    def __repr__(self) -> str:
        return f"<task {self.fn.__qualname__} {self._options}>"


def task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make a function concurrent: ``@task`` or ``@task(mode="process", max_workers=4)``."""
    validated = validate_options(options)
    if fn is not None:
        return TaskFunction(fn, validated)
    return lambda target: TaskFunction(target, validated)
