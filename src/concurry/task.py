"""Running plain functions: ``TaskWorker``, ``@task`` and ``Executor``.

A ``TaskWorker`` is an ordinary worker whose one method, ``submit(fn, *args)``, calls ``fn``
where the worker lives. Its handles (single or pool) are real ``concurrent.futures.Executor``s.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from .config import resolve_options
from .errors import WorkerStoppedError
from .futures import BaseFuture, remaining
from .options import validate_options
from .progress import check_progress, progress_bar
from .proxy import EXIT_GRACE, WorkerHandle
from .retry import check_retry_methods
from .worker import Worker, WorkerBuilder
from .worker_limits import takes_limits

P = ParamSpec("P")
R = TypeVar("R")


class TaskHandleMixin(cf.Executor):
    """Executor API on top of a worker handle or pool (mixed in by ``handle_class``)."""

    # Returns Any, not BaseFuture[R]: with ``blocking`` (an option, or global_config) it is the result.
    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Run ``fn(*args, **kwargs)`` on the worker; returns a future (the result if ``blocking``)."""
        future = self._caller("submit")(fn, *args, **kwargs)
        return future.result() if self._options.blocking else future

    def map(
        self,
        fn: Callable[..., R],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        progress: Any = False,
    ) -> Iterator[R]:
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


def _results_in_order(futures: list[BaseFuture[R]], timeout: float | None, progress: Any) -> Iterator[R]:
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


def _result(future: BaseFuture[R], seconds: float | None, timeout: float | None, bar: Any) -> R:
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
    """A worker that runs whatever function it is given: ``tw.submit(fn, *args, **kwargs)``.
    A function with a parameter named ``limits`` that the call leaves unfilled gets the worker's set."""

    __concurry_handle_mixin__ = TaskHandleMixin
    __concurry_runs_functions__ = True  # errors name submit's function, not submit

    if TYPE_CHECKING:  # what its handles are: Executors as well as worker handles

        @classmethod
        def init(cls, *args: Any, **kwargs: Any) -> TaskHandle: ...
        @classmethod
        def options(cls, **options: Any) -> WorkerBuilder[TaskHandle]: ...

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        if takes_limits(fn, len(args), kwargs):  # a ``limits`` parameter gets the worker's set
            kwargs["limits"] = self.limits  # type: ignore[index]
        return fn(*args, **kwargs)


if TYPE_CHECKING:

    class TaskHandle(TaskHandleMixin, WorkerHandle):
        """For type checkers: a TaskWorker's handle (single or pool) is both. At run time it is
        ``TaskHandleMixin`` mixed into the single-worker or pool handle class."""


def Executor(**options: Any) -> TaskHandle:
    """A ``TaskWorker`` (or pool) with these options: ``Executor(mode="thread", max_workers=4)``."""
    return TaskWorker.options(**options).init()


class TaskFunction(Generic[P, R]):
    """A function made concurrent by ``@task``: calling it returns a future.

    The worker (or pool) behind it starts on the first call and lives until ``stop()``.
    Calls are typed as returning ``Any``, not ``BaseFuture[R]``: with ``blocking`` (an option,
    or ``global_config``) they return the result; their arguments are checked against ``fn``'s.
    """

    def __init__(self, fn: Callable[P, R], options: dict[str, Any]):
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

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self._worker().submit(self.fn, *args, **kwargs)

    def submit(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        return self._worker().submit(self.fn, *args, **kwargs)

    def map(
        self, *iterables: Iterable[Any], timeout: float | None = None, progress: Any = False
    ) -> Iterator[R]:
        return self._worker().map(self.fn, *iterables, timeout=timeout, progress=progress)

    def stop(self, timeout: float | None = None, cancel_futures: bool = False) -> None:
        with self._lock:
            self._stopped = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.stop(timeout, cancel_futures)

    def pool_stats(self) -> dict[str, Any]:
        """A snapshot of the workers behind the task, as a pool's ``pool_stats()``; never starts them.

        Always: ``task`` (the function's name), ``started`` (workers exist now: after the first
        call, until ``stop()``), ``stopped``, ``mode`` and ``unfinished`` calls. On a pool
        (``max_workers`` > 1 or ``on_demand``) the rest is the pool's own ``pool_stats()``. On a
        single worker, ``workers`` has its one entry (``worker``, ``state``, ``unfinished``,
        ``in_backend``, ``waiting``, ``restarts``; no ``total``: a single worker does not count
        its calls). Before the first call, ``workers`` is empty.
        """
        executor = self._executor
        name = self.fn.__qualname__
        if executor is None:
            mode = resolve_options(self._options).mode.value
            return {
                "task": name,
                "started": False,
                "stopped": self._stopped,
                "mode": mode,
                "unfinished": 0,
                "workers": [],
            }
        if executor._options.is_pool:
            return {"task": name, "started": True, **executor.pool_stats()}
        backend = executor._engine
        state = "crashed" if backend.crashed else "stopped" if backend.stopped else "running"
        unfinished = backend.unfinished
        worker = {
            "worker": backend.name,
            "state": state,
            "unfinished": unfinished,
            "in_backend": unfinished,
            "waiting": 0,
            "restarts": 0,
        }
        return {
            "task": name,
            "started": True,
            "stopped": backend.stopped,
            "mode": executor.mode,
            "unfinished": unfinished,
            "workers": [worker],
        }

    def __enter__(self) -> TaskFunction[P, R]:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        executor = self._executor
        if exc_type is None or executor is None:
            self.stop()
        else:  # an exception (Ctrl-C included): cancel what has not started, release soon
            self.stop(min(EXIT_GRACE, executor._options.stop_timeout), True)

    def __repr__(self) -> str:
        return f"<task {self.fn.__qualname__} {self._options}>"


@overload
def task(fn: Callable[P, R], /) -> TaskFunction[P, R]: ...
@overload
def task(fn: None = None, /, **options: Any) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...


def task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make a function concurrent: ``@task`` or ``@task(mode="process", max_workers=4)``.

    A function with a parameter named ``limits`` gets the task's ``LimitSet`` in it (from
    ``limits=``; an empty set that always grants without it), unless the call passes one."""
    validated = validate_options(options)
    check_retry_methods(TaskWorker, validated)  # now, not at the first call
    if fn is not None:
        return TaskFunction(fn, validated)
    return lambda target: TaskFunction(target, validated)
