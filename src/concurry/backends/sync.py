"""``sync`` mode: the call runs in the caller's thread, during the call; futures are born done."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..futures import BaseFuture, ConcurrentFuture, SyncFuture, set_outcome
from ..runtime import Runtime
from .base import Backend


class SyncBackend(Backend):
    """No transport at all: the runtime lives in the calling thread."""

    def start(self) -> None:
        self.runtime = Runtime(self.cls, self.args, self.kwargs, self.options.unwrap_futures)

    def submit(
        self, name: str, args: tuple, kwargs: dict, future: ConcurrentFuture | None = None
    ) -> BaseFuture:
        if self._stopped:
            raise self.stopped_error()
        # Exception, not BaseException: a Ctrl-C during a sync call belongs to the caller.
        try:
            result, error = self.runtime.invoke(name, args, kwargs), None
        except Exception as exc:
            result, error = None, exc
        if future is None:
            return SyncFuture(result, error)
        if future.set_running_or_notify_cancel():
            set_outcome(future, result, error)
        return future

    def caller(self, name: str) -> Callable[..., BaseFuture]:
        invoke = self.runtime.invoke

        def call(*args: Any, **kwargs: Any) -> BaseFuture:
            if self._stopped:
                raise self.stopped_error()
            try:
                return SyncFuture(invoke(name, args, kwargs))
            except Exception as exc:
                return SyncFuture(None, exc)

        return call

    def stop(self, timeout: float | None = None, cancel_futures: bool = False, wait: bool = True) -> None:
        if self._begin_stop():
            self.runtime.close()
