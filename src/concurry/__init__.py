"""Concurry: one API for running Python code concurrently.

Write a class (``@worker``) or a function (``@task``) once, pick ``mode=`` (``sync``, ``thread``,
``asyncio``, ``process``, ``ray``) and get futures, pools, limits, retries and progress bars.
"""

from typing import Any

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
from .progress import ProgressBar
from .synch import async_gather, async_wait, gather, wait
from .task import Executor, TaskWorker, task
from .worker import Worker, worker

__version__ = "0.1.0"

_LAZY = {"global_config", "temp_config"}


def __getattr__(name: str) -> Any:
    # The configuration is built on pydantic, whose import costs more than the rest of the
    # package together; load it on first use, so that a process worker's child starts fast.
    if name in _LAZY:
        from . import config

        value = getattr(config, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'concurry' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "AsyncioFuture",
    "BaseFuture",
    "ConcurrentFuture",
    "ExecutionMode",
    "Executor",
    "LoadBalancingAlgorithm",
    "PollingAlgorithm",
    "ProgressBar",
    "RateLimitAlgorithm",
    "RetryAlgorithm",
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
