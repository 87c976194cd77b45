"""The runtime: everything that happens next to the user's instance, the same in every mode.

A backend builds one ``Runtime`` where the instance lives (caller thread, worker thread, event
loop thread, child process) and hands it each call; it is the one place a call runs. What
happens around a call (unwrapping futures, retries, call limits) is described once by a
picklable ``CallOptions`` and turned, per method on first use, into a cached ``Plan``, so every
mode gets the same behaviour by construction. Backends depend on the runtime, never the other
way round.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .futures import BaseFuture
from .options import RetryOptions, WorkerOptions
from .retry import call_with_retries, call_with_retries_async, policy_for
from .worker_limits import (
    AttemptUnits,
    CallGate,
    Limits,
    call_gate,
    construct_with,
    for_instance,
    resource_sets,
    takes_limits,
    unbind,
)

logger = logging.getLogger("concurry")

_PLAIN = (int, float, str, bytes, bool, type(None))
# what is unwrapped in arguments: our futures and plain concurrent.futures ones
_FUTURES = (BaseFuture, concurrent.futures.Future)
# containers searched for futures (exact types: a subclass may rebuild itself differently)
_CONTAINERS = frozenset((list, tuple, dict, set, frozenset))
# containers whose copy can exist before its items (so a cycle through one can be rebuilt)
_MUTABLE = (list, dict)

# The scans below are iterative and remember what they visited (by id), so a cyclic argument
# or one nested thousands of levels deep is scanned like any other, each container once. The
# arguments are alive while they are scanned, so an id names one object throughout.


def _items(container: Any) -> Any:
    return container.values() if type(container) is dict else container


def _has_future(items: Any) -> bool:
    """Does anything in ``items``, or nested in a container among them, hold a future?"""
    nested = None  # containers met at the top level, searched only if there are any
    for item in items:
        kind = type(item)
        if kind in _PLAIN:
            continue
        if kind in _CONTAINERS:
            if nested is None:
                nested = [item]
            else:
                nested.append(item)
        elif isinstance(item, _FUTURES):
            return True
    if nested is None:
        return False
    seen = {id(c) for c in nested}
    while nested:
        for item in _items(nested.pop()):
            kind = type(item)
            if kind in _PLAIN:
                continue
            if kind in _CONTAINERS:
                if id(item) not in seen:
                    seen.add(id(item))
                    nested.append(item)
            elif isinstance(item, _FUTURES):
                return True
    return False


def contains_future(value: Any) -> bool:
    """Is there a future in ``value`` (top level, or nested in list/tuple/set/dict values)?"""
    return _has_future((value,))


def call_has_futures(args: tuple, kwargs: dict) -> bool:
    """Is there a future among a call's arguments? Never raises; flat arguments cost one loop."""
    return _has_future(args) or (bool(kwargs) and _has_future(kwargs.values()))


def _graph(value: Any) -> tuple[list[Any], dict[int, list[int]]]:
    """Every future and container reachable from ``value`` (each once, in the order found) and,
    for each of them, the ids of the containers holding it."""
    found: list[Any] = []
    holders: dict[int, list[int]] = {id(value): []}
    stack = [value]
    while stack:
        node = stack.pop()
        found.append(node)
        if type(node) not in _CONTAINERS:
            continue  # a future
        here = id(node)
        new = []
        for item in _items(node):
            if type(item) in _CONTAINERS or isinstance(item, _FUTURES):
                key = id(item)
                if key in holders:
                    holders[key].append(here)
                else:
                    holders[key] = [here]
                    new.append(item)
        stack.extend(reversed(new))  # depth first, left to right
    return found, holders


def collect_futures(value: Any, into: list) -> list:
    """Append every future found in ``value`` to ``into``, each once; returns ``into``."""
    if isinstance(value, _FUTURES) or type(value) in _CONTAINERS:
        into.extend(node for node in _graph(value)[0] if type(node) not in _CONTAINERS)
    return into


def replace_futures(value: Any, resolve: Callable[[BaseFuture], Any]) -> Any:
    """A copy of ``value`` with every future replaced by ``resolve(future)``; a failure propagates.

    Only the containers that lead to a future are copied (the rest are passed as they are), each
    once, so shared references and cycles survive: a list that holds itself and a future becomes
    a list that holds itself and the future's value. Futures are resolved in the order found.
    """
    if isinstance(value, _FUTURES):
        return resolve(value)
    if type(value) not in _CONTAINERS:
        return value
    found, holders = _graph(value)
    # containers leading to a future: walk from each future up through its holders
    copies: dict[int, Any] = {}
    marked: set[int] = set()
    for node in found:
        if type(node) not in _CONTAINERS:
            copies[id(node)] = resolve(node)
            up = list(holders[id(node)])
            while up:
                key = up.pop()
                if key not in marked:
                    marked.add(key)
                    up.extend(holders[key])
    if not marked:
        return value
    to_copy = [node for node in found if id(node) in marked]
    # lists and dicts are created empty first, so anything may refer to them; the immutable
    # containers are built once their immutable items are (they cannot form a cycle alone)
    for node in to_copy:
        if type(node) in _MUTABLE:
            copies[id(node)] = type(node)()
    for node in to_copy:
        if type(node) not in _MUTABLE:
            _build_immutable(node, copies, marked)
    for node in to_copy:
        copy = copies[id(node)]
        if type(node) is list:
            copy.extend([copies.get(id(item), item) for item in node])
        elif type(node) is dict:
            copy.update({key: copies.get(id(item), item) for key, item in node.items()})
    return copies[id(value)]


def _build_immutable(node: Any, copies: dict[int, Any], marked: set[int]) -> None:
    """Copy a tuple/set/frozenset after the immutable containers inside it (iteratively)."""
    stack = [(node, False)]
    started: set[int] = set()  # guards against a cycle of immutables only (C code can make one)
    while stack:
        current, ready = stack.pop()
        if id(current) in copies:
            continue
        if not ready:
            started.add(id(current))
            stack.append((current, True))
            stack.extend(
                (item, False)
                for item in current
                if id(item) in marked and type(item) not in _MUTABLE and id(item) not in started
            )
            continue
        copies[id(current)] = type(current)(copies.get(id(item), item) for item in current)


def _blocking_result(future: BaseFuture) -> Any:
    return future.result()


def construct(cls: type, args: tuple, kwargs: dict) -> Any:
    """Build the user's instance, bypassing the worker metaclass (whose ``__call__`` makes handles)."""
    construct_fn = getattr(cls, "__concurry_construct__", None)
    if construct_fn is not None:
        return construct_fn(*args, **kwargs)
    return cls(*args, **kwargs)


@dataclass(frozen=True)
class CallOptions:
    """What happens around every call of one worker, built once from its options; picklable
    (a process worker's child builds its runtime from it)."""

    unwrap_futures: bool = True
    retry: RetryOptions = field(default_factory=RetryOptions)
    # as ``bind_limits`` left it: a private set travels as its definition (each worker copies it
    # fresh), a process-shared one as a reference to its shared memory
    limits: Limits | None = None

    @classmethod
    def of(cls, options: WorkerOptions) -> CallOptions:
        return cls(options.unwrap_futures, options.retry, options.limits)


# A method's plan, decided on its first call: ``(fn, unwrap, is_async, retry, gate)`` — the bound
# method, whether to look for futures among the arguments, whether it is an ``async def``, its
# retry policy (None: the call goes straight through) and the worker's ``CallGate`` (None: no
# CallLimit, nothing taken per call). An exact tuple, because unpacking one is the fastest thing
# Python does with a record, and it happens on every call.
Plan = tuple[Callable[..., Any], bool, bool, Any, "CallGate | None"]


class Runtime:
    """Runs calls against one instance. Not thread-safe by design: one backend thread uses it."""

    def __init__(self, cls: type, args: tuple, kwargs: dict, options: CallOptions | None = None):
        self.options = options = options if options is not None else CallOptions()
        self._plans: dict[str, Plan] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # stop signal for back-offs: set by the backend's stop (any thread); a process child,
        # whose one thread is busy with the call, sets ``poll_stop`` to read the parent's flag
        self._stopping = threading.Event()
        self.poll_stop: Callable[[], bool] | None = None
        self._sleepers: set[asyncio.Future] = set()
        self._sleep_loop: asyncio.AbstractEventLoop | None = None
        # TaskWorker: retries apply to the function submitted, not to ``submit``
        self._runs_functions = bool(getattr(cls, "__concurry_runs_functions__", False))
        if options.unwrap_futures and call_has_futures(args, kwargs):
            args, kwargs = replace_futures((args, kwargs), _blocking_result)
        # the set the instance sees as ``self.limits``; what a call takes of it, and what a
        # failed attempt must give back, are decided now, once
        self.limits = limits = for_instance(options.limits)
        self._gate = call_gate(limits) if options.limits is not None else None
        self._held_sets = resource_sets(limits) if options.limits is not None else None
        self.instance = construct_with(limits, lambda: construct(cls, args, kwargs))

    def plan(self, name: str) -> Plan:
        """The cached plan for method ``name`` (an unknown name raises ``AttributeError``)."""
        try:
            return self._plans[name]
        except KeyError:
            fn = getattr(self.instance, name)
            retry = policy_for(self.options.retry, name)
            plan = (fn, self.options.unwrap_futures, inspect.iscoroutinefunction(fn), retry, self._gate)
            self._plans[name] = plan
            return plan

    def invoke(self, name: str, args: tuple, kwargs: dict) -> Any:
        """Run one call to completion in this thread and return its result (or raise)."""
        try:
            fn, unwrap, is_async, retry, gate = self._plans[name]
        except KeyError:
            fn, unwrap, is_async, retry, gate = self.plan(name)
        if unwrap and (args or kwargs) and call_has_futures(args, kwargs):
            args, kwargs = replace_futures((args, kwargs), _blocking_result)
        if retry is not None:
            fn, name, is_async, args, kwargs = self._target(fn, name, is_async, args, kwargs)
            if gate is not None:
                fn = gate.before(fn, is_async)  # every attempt runs the method: each takes a unit
            if is_async:
                return self.run_coroutine(self._retried_async(fn, args, kwargs, retry, name))
            result = self._retried(fn, args, kwargs, retry, name)
        else:
            if gate is not None:
                gate.take()
            result = fn(*args, **kwargs)
        if inspect.iscoroutine(result):
            result = self.run_coroutine(result)
        return result

    def invoke_on_loop(self, name: str, args: tuple, kwargs: dict) -> Any:
        """Start one call on the running event loop (asyncio mode): the result of a plain method,
        or a coroutine for the loop to run as a task (an ``async def`` method, or a call whose
        argument futures are awaited first, never blocked on)."""
        try:
            fn, unwrap, is_async, retry, gate = self._plans[name]
        except KeyError:
            fn, unwrap, is_async, retry, gate = self.plan(name)
        if unwrap and (args or kwargs) and call_has_futures(args, kwargs):
            return self._unwrap_then_call(fn, name, is_async, retry, gate, args, kwargs)
        if retry is not None:
            return self._retried_on_loop(fn, name, is_async, retry, gate, args, kwargs)
        if gate is not None and not gate.try_take():
            return self._call_when_granted(fn, gate, args, kwargs)  # waits without blocking the loop
        return fn(*args, **kwargs)

    async def _unwrap_then_call(
        self,
        fn: Callable[..., Any],
        name: str,
        is_async: bool,
        retry: Any,
        gate: CallGate | None,
        args: tuple,
        kwargs: dict,
    ) -> Any:
        found = collect_futures((args, kwargs), [])
        awaitables = [f if isinstance(f, BaseFuture) else asyncio.wrap_future(f) for f in found]
        values = {id(f): await a for f, a in zip(found, awaitables, strict=True)}
        args, kwargs = replace_futures((args, kwargs), lambda f: values[id(f)])
        if retry is not None:
            return await self._retried_on_loop(fn, name, is_async, retry, gate, args, kwargs)
        if gate is not None:
            return await self._call_when_granted(fn, gate, args, kwargs)
        result = fn(*args, **kwargs)
        if inspect.iscoroutine(result):
            result = await result
        return result

    async def _call_when_granted(
        self, fn: Callable[..., Any], gate: CallGate, args: tuple, kwargs: dict
    ) -> Any:
        await gate.take_async()
        result = fn(*args, **kwargs)
        if inspect.iscoroutine(result):
            result = await result
        return result

    async def _retried_on_loop(
        self,
        fn: Callable[..., Any],
        name: str,
        is_async: bool,
        retry: Any,
        gate: CallGate | None,
        args: tuple,
        kwargs: dict,
    ) -> Any:
        """A retried call in asyncio mode is a task: its back-offs await, so other calls run
        meanwhile (a plain ``def`` method's attempts still run on the loop thread, one at a time)."""
        fn, name, is_async, args, kwargs = self._target(fn, name, is_async, args, kwargs)
        if not is_async:
            fn = _as_coroutine_function(fn)
        if gate is not None:
            fn = gate.before(fn, True)
        return await self._retried_async(fn, args, kwargs, retry, name)

    def _retried(self, fn: Callable[..., Any], args: tuple, kwargs: dict, retry: Any, name: str) -> Any:
        """The attempt loop; with resource limits, what a failed attempt still holds of them is
        returned before its back-off (tracked only during retried calls, in this thread)."""
        sets = self._held_sets
        if sets is None:
            return call_with_retries(fn, args, kwargs, retry, name, self._sleep)
        with AttemptUnits(sets) as units:
            return call_with_retries(fn, args, kwargs, retry, name, self._sleep, units.release)

    async def _retried_async(
        self, fn: Callable[..., Any], args: tuple, kwargs: dict, retry: Any, name: str
    ) -> Any:
        """``_retried`` for coroutine functions (the units are tracked in this task's context)."""
        sets = self._held_sets
        if sets is None:
            return await call_with_retries_async(fn, args, kwargs, retry, name, self._sleep_async)
        with AttemptUnits(sets) as units:
            return await call_with_retries_async(
                fn, args, kwargs, retry, name, self._sleep_async, units.release
            )

    def _target(self, fn: Callable[..., Any], name: str, is_async: bool, args: tuple, kwargs: dict) -> tuple:
        """What the attempts call: the method, or for a TaskWorker's ``submit`` the function
        submitted (so an ``async def`` function is retried too, under its own name, and gets
        ``limits=`` as ``submit`` would give it)."""
        if self._runs_functions and name == "submit" and args:
            fn, args = args[0], args[1:]
            name = getattr(fn, "__name__", None) or name
            is_async = inspect.iscoroutinefunction(fn)
            if takes_limits(fn, len(args), kwargs):
                kwargs = {**kwargs, "limits": self.limits}
        return fn, name, is_async, args, kwargs

    # ---- back-off waits: cut short by ``request_stop`` ----

    def request_stop(self) -> None:
        """The worker is stopping: a call waiting between attempts ends now with its last failure
        (and later calls get no more retries). Safe from any thread."""
        self._stopping.set()
        loop = self._sleep_loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._wake_sleepers)
            except RuntimeError:  # that loop is closed: nothing sleeps on it
                pass

    def _stop_requested(self) -> bool:
        return self._stopping.is_set() or (self.poll_stop is not None and self.poll_stop())

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; False when stop was requested first."""
        if self.poll_stop is None:
            return not self._stopping.wait(seconds)
        deadline = time.monotonic() + seconds
        while not self._stop_requested():
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            self._stopping.wait(min(left, _POLL_INTERVAL))
        return False

    async def _sleep_async(self, seconds: float) -> bool:
        """``_sleep`` on the running event loop: other tasks run meanwhile."""
        if self._stop_requested():
            return False
        loop = asyncio.get_running_loop()
        self._sleep_loop = loop
        waker = loop.create_future()
        timer = loop.call_later(seconds, _resolve, waker, True)
        poller = None
        if self.poll_stop is not None:
            poller = loop.create_task(self._poll_until(waker))
        self._sleepers.add(waker)
        try:
            if self._stopping.is_set():  # set before _sleep_loop was: no wake-up was scheduled
                return False
            return await waker
        finally:
            timer.cancel()
            if poller is not None:
                poller.cancel()
            self._sleepers.discard(waker)

    async def _poll_until(self, waker: asyncio.Future) -> None:
        while not waker.done():
            if self._stop_requested():
                _resolve(waker, False)
                return
            await asyncio.sleep(_POLL_INTERVAL)

    def _wake_sleepers(self) -> None:
        for waker in list(self._sleepers):
            _resolve(waker, False)

    def run_coroutine(self, coro: Any) -> Any:
        """Drive an ``async def`` call to completion on this worker's own event loop."""
        if asyncio._get_running_loop() is not None:
            # Sync mode called from inside someone else's loop: that loop owns this thread,
            # so run ours on a helper thread rather than fail with "loop already running".
            return _run_in_helper_thread(coro)
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    def close(self) -> None:
        """Run the instance's own ``stop()`` if its class defines one, then release our loop.

        A worker that owns other workers cleans them up in its ``stop()``; the
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
            unbind(self.instance)
            # a sync-mode worker stopped from another thread may still be running a call on
            # its loop (ending after a cut-short back-off): that loop is left to be collected
            if self._loop is not None and not self._loop.is_running():
                self._loop.close()
                self._loop = None


# how often a process child's back-off looks at the parent's stop flag
_POLL_INTERVAL = 0.05


def _resolve(waker: asyncio.Future, value: bool) -> None:
    if not waker.done():
        waker.set_result(value)


def _as_coroutine_function(fn: Callable[..., Any]) -> Callable[..., Any]:
    async def attempt(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        if inspect.iscoroutine(result):
            result = await result
        return result

    return attempt


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
