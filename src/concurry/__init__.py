"""Concurry: one API for running Python code concurrently.

Write a class (``@worker``) or a function (``@task``) once, pick ``mode=`` (``sync``, ``thread``,
``asyncio``, ``process``, ``ray``) and get futures, pools, limits, retries and progress bars.
"""

from .config import global_config, temp_config
from .constants import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    ExecutionMode,
    LoadBalancingAlgorithm,
    PollingAlgorithm,
    RateLimitAlgorithm,
    RetryAlgorithm,
    ReturnWhen,
)
from .errors import RetryValidationError, WorkerCrashedError, WorkerStoppedError
from .futures import AsyncioFuture, BaseFuture, ConcurrentFuture, SyncFuture, wrap_future
from .limits import Acquisition, CallLimit, Limit, LimitPool, LimitSet, RateLimit, ResourceLimit
from .options import RetryConfig
from .progress import ProgressBar
from .synch import async_gather, async_wait, gather, wait
from .task import Executor, TaskWorker, task
from .worker import Worker, worker

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``concurry.RayFuture``, imported on first use so that ``import concurry`` never imports Ray."""
    if name == "RayFuture":
        try:
            from .backends.ray_future import RayFuture
        except ImportError as exc:
            raise AttributeError(
                f"concurry.RayFuture needs Ray, which cannot be imported ({exc}): pip install 'concurry[ray]'"
            ) from None
        return RayFuture
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "Acquisition",
    "AsyncioFuture",
    "BaseFuture",
    "CallLimit",
    "ConcurrentFuture",
    "ExecutionMode",
    "Executor",
    "Limit",
    "LimitPool",
    "LimitSet",
    "LoadBalancingAlgorithm",
    "PollingAlgorithm",
    "ProgressBar",
    "RateLimit",
    "RateLimitAlgorithm",
    "ResourceLimit",
    "RetryAlgorithm",
    "RetryConfig",
    "RetryValidationError",
    "ReturnWhen",
    "SyncFuture",
    "TaskWorker",
    "Worker",
    "WorkerCrashedError",
    "WorkerStoppedError",
    "async_gather",
    "async_wait",
    "gather",
    "global_config",
    "task",
    "temp_config",
    "wait",
    "worker",
    "wrap_future",
]
