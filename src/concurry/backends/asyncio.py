"""``asyncio`` mode: one event loop per worker, on its own thread.

``async def`` calls become tasks on the loop and interleave at ``await`` points; plain ``def``
calls run on the loop thread in order (they block the loop while they run). Callers in other
threads append to an inbox; one ``call_soon_threadsafe`` wakes the loop per batch, not per call.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import threading
from typing import Any

from ..futures import BaseFuture, ConcurrentFuture, force_cancel, set_outcome
from ..runtime import CallOptions, Runtime
from ..thread_exit import join
from .base import Backend


class AsyncioBackend(Backend):
    """A private event loop thread that owns the instance."""

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._inbox: collections.deque = collections.deque()
        self._wakeup_pending = False
        self._finished = False
        self._tasks: dict[asyncio.Task, ConcurrentFuture] = {}
        self._current: ConcurrentFuture | None = None
        self._init_error: BaseException | None = None
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"concurry-asyncio-{self.name}", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._init_error is not None:
            self._stopped = True
            self._thread.join()
            raise self._init_error

    # ---- caller side ----

    def submit(
        self, name: str, args: tuple, kwargs: dict, future: ConcurrentFuture | None = None
    ) -> BaseFuture:
        """The one path for calls: a single worker's ``caller(name)`` (the default in
        ``Backend``) is a closure over it."""
        if self._stopped:
            raise self.stopped_error()
        if future is None:
            future = ConcurrentFuture()
        self._inbox.append((future, name, args, kwargs))
        if not self._wakeup_pending:
            self._wakeup_pending = True
            try:
                self._loop.call_soon_threadsafe(self._drain_inbox)
            except RuntimeError:  # loop already closed: the worker has finished
                pass
        if self._finished:
            self._cancel_inbox()
        return future

    def stop(self, timeout: float | None = None, cancel_futures: bool = False, wait: bool = True) -> None:
        if threading.current_thread() is self._thread:
            wait = False  # stop() called from inside the worker: just start the shutdown
        if not self._begin_stop():
            if wait:
                self._await_exit(timeout)  # also when stop() was begun earlier: the deadline holds
            return
        runtime = getattr(self, "runtime", None)
        if runtime is not None:
            runtime.request_stop()  # a call in a back-off ends now, with its last failure
        if cancel_futures:
            # Now, from the caller: the loop may be blocked by a plain ``def`` call, and the
            # wake-up already scheduled would otherwise start the queued calls before _shutdown.
            self._cancel_inbox()
        try:
            self._loop.call_soon_threadsafe(
                lambda: self._loop.create_task(self._shutdown(timeout, cancel_futures))
            )
        except RuntimeError:
            pass
        if wait:
            self._await_exit(timeout)

    def _await_exit(self, timeout: float | None) -> None:
        if not join(self._thread, timeout):
            # Past the deadline (or the interpreter is exiting): a plain ``def`` call may be
            # blocking the loop (so _shutdown cannot run), or _shutdown is cancelling tasks now.
            # Either way, what has not finished is cancelled; the loop gets a moment to wind down.
            self._cancel_inbox()
            for future in list(self._tasks.values()):
                force_cancel(future)
            if self._current is not None:
                force_cancel(self._current)
            join(self._thread, 1.0)

    def _cancel_inbox(self) -> None:
        while True:
            try:
                force_cancel(self._inbox.popleft()[0])
            except IndexError:
                return

    # ---- loop thread ----

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self.runtime = Runtime(self.cls, self.args, self.kwargs, CallOptions.of(self.options))
        except BaseException as exc:
            self._init_error = exc
            self._finished = True
            self._loop.close()
            ready.set()
            return
        self.args = self.kwargs = None
        self._invoke = self.runtime.invoke_on_loop
        ready.set()
        try:
            self._loop.run_forever()
        finally:
            try:
                self.runtime.close()
            finally:
                self._finished = True
                self._cancel_inbox()
                for future in self._tasks.values():
                    force_cancel(future)
                self._loop.close()

    def _drain_inbox(self) -> None:
        self._wakeup_pending = False
        inbox = self._inbox
        while True:
            try:
                item = inbox.popleft()
            except IndexError:  # empty (a timed-out stop may empty it from another thread)
                return
            self._start_call(*item)

    def _start_call(self, future: ConcurrentFuture, name: str, args: tuple, kwargs: dict) -> None:
        try:
            if not future.set_running_or_notify_cancel():
                return
        except RuntimeError:
            return
        self._current = future
        try:
            result = self._invoke(name, args, kwargs)
        except BaseException as exc:  # preparing or running the call: that call fails, not the loop
            set_outcome(future, None, exc)
            return
        finally:
            self._current = None
        if inspect.iscoroutine(result):
            task = self._loop.create_task(_settle(result, future))
            self._tasks[task] = future
            task.add_done_callback(self._task_done)
        else:
            set_outcome(future, result, None)

    def _task_done(self, task: asyncio.Task) -> None:
        future = self._tasks.pop(task)
        if task.cancelled():  # by stop(); any other outcome was already set by _settle
            force_cancel(future)

    async def _shutdown(self, timeout: float | None, cancel_futures: bool) -> None:
        if cancel_futures:
            self._cancel_inbox()
        else:
            self._drain_inbox()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        self._loop.stop()


async def _settle(coro: Any, future: ConcurrentFuture) -> None:
    """Run an ``async def`` call and resolve its future with whatever it returns or raises.

    The outcome is caught here, inside the task, because an asyncio task re-raises
    ``KeyboardInterrupt`` and ``SystemExit`` into the event loop, which would kill the worker's
    loop thread and leave the future cancelled. Only a cancellation (by ``stop()``) escapes.
    """
    try:
        result = await coro
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        set_outcome(future, None, exc)
    else:
        set_outcome(future, result, None)
