"""The runtime: everything that happens next to the user's instance, the same in every mode.

A backend builds one ``Runtime`` where the instance lives (caller thread, worker thread, event
loop thread, child process) and hands it each call. The runtime constructs the instance,
resolves futures among the arguments, runs the method, and drives ``async def`` methods to
completion. Retries and limits (SPEC §10, §11) will wrap ``invoke`` here, once, for all modes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

from .futures import BaseFuture

logger = logging.getLogger("concurry")

_PLAIN = (int, float, str, bytes, bool, type(None))
# what is unwrapped in arguments: our futures and plain concurrent.futures ones
_FUTURES = (BaseFuture, concurrent.futures.Future)


def contains_future(value: Any) -> bool:
    """Is there a future in ``value`` (top level, or nested in list/tuple/set/dict values)?"""
    if isinstance(value, _FUTURES):
        return True
    kind = type(value)
    if kind in _PLAIN:
        return False
    if kind is dict:
        return any(contains_future(v) for v in value.values())
    if kind in (list, tuple, set, frozenset):
        return any(contains_future(v) for v in value)
    return False


def call_has_futures(args: tuple, kwargs: dict) -> bool:
    return (bool(args) and contains_future(args)) or (bool(kwargs) and contains_future(kwargs))


def replace_futures(value: Any, resolve: Callable[[BaseFuture], Any]) -> Any:
    """Copy ``value`` with every future replaced by ``resolve(future)``; a failure propagates."""
    if isinstance(value, _FUTURES):
        return resolve(value)
    kind = type(value)
    if kind is dict:
        return {k: replace_futures(v, resolve) for k, v in value.items()}
    if kind in (list, tuple, set, frozenset):
        return kind(replace_futures(v, resolve) for v in value)
    return value


def collect_futures(value: Any, into: list) -> list:
    """Append every future found in ``value`` to ``into`` (same traversal as ``replace_futures``)."""
    if isinstance(value, _FUTURES):
        into.append(value)
    elif type(value) is dict:
        for v in value.values():
            collect_futures(v, into)
    elif type(value) in (list, tuple, set, frozenset):
        for v in value:
            collect_futures(v, into)
    return into


def _blocking_result(future: BaseFuture) -> Any:
    return future.result()


def construct(cls: type, args: tuple, kwargs: dict) -> Any:
    """Build the user's instance, bypassing the worker metaclass (whose ``__call__`` makes handles)."""
    construct_fn = getattr(cls, "__concurry_construct__", None)
    if construct_fn is not None:
        return construct_fn(*args, **kwargs)
    return cls(*args, **kwargs)


class Runtime:
    """Runs calls against one instance. Not thread-safe by design: one backend thread uses it."""

    def __init__(self, cls: type, args: tuple, kwargs: dict, unwrap_futures: bool = True):
        self.unwrap_futures = unwrap_futures
        self._methods: dict[str, Callable[..., Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        if unwrap_futures and call_has_futures(args, kwargs):
            args, kwargs = replace_futures((args, kwargs), _blocking_result)
        self.instance = construct(cls, args, kwargs)

    def method(self, name: str) -> Callable[..., Any]:
        try:
            return self._methods[name]
        except KeyError:
            bound = self._methods[name] = getattr(self.instance, name)
            return bound

    def invoke(self, name: str, args: tuple, kwargs: dict) -> Any:
        """Run one call to completion in this thread and return its result (or raise)."""
        if self.unwrap_futures and (args or kwargs) and call_has_futures(args, kwargs):
            args, kwargs = replace_futures((args, kwargs), _blocking_result)
        result = self.method(name)(*args, **kwargs)
        if inspect.iscoroutine(result):
            result = self.run_coroutine(result)
        return result

    def run_coroutine(self, coro: Any) -> Any:
        """Drive an ``async def`` call to completion on this worker's own event loop."""
        if asyncio._get_running_loop() is not None:
            # Sync mode called from inside someone else's loop: that loop owns this thread,
            # so run ours on a helper thread rather than fail with "loop already running".
            return _run_in_helper_thread(coro)
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    async def invoke_async(self, name: str, args: tuple, kwargs: dict) -> Any:
        """Run one call on the current event loop (asyncio mode): futures are awaited, not blocked on."""
        if self.unwrap_futures and (args or kwargs) and call_has_futures(args, kwargs):
            found = collect_futures((args, kwargs), [])
            awaitables = [f if isinstance(f, BaseFuture) else asyncio.wrap_future(f) for f in found]
            values = {id(f): await a for f, a in zip(found, awaitables, strict=True)}
            args, kwargs = replace_futures((args, kwargs), lambda f: values[id(f)])
        result = self.method(name)(*args, **kwargs)
        if inspect.iscoroutine(result):
            result = await result
        return result

    def close(self) -> None:
        """Run the instance's own ``stop()`` if its class defines one, then release our loop.

        A worker that owns other workers (SPEC §2.6) cleans them up in its ``stop()``; the
        handle's ``stop()`` shadows that method for callers, so the runtime runs it last.
        """
        try:
            hook = getattr(type(self.instance), "stop", None)
            if callable(hook):
                try:
                    result = hook(self.instance)
                    if inspect.iscoroutine(result):
                        self.run_coroutine(result)
                except Exception:
                    logger.exception("the worker's own stop() raised")
        finally:
            if self._loop is not None:
                self._loop.close()
                self._loop = None


def _run_in_helper_thread(coro: Any) -> Any:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = asyncio.run(coro)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="concurry-async-helper", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
