"""A worker's limits: what its ``limits=`` option becomes, and what the runtime does with it.

- ``bind_limits`` (at ``init()``, in the caller): a list of limits becomes one worker's private
  set or, given to a pool, one set shared by all its workers; a shared set whose mode cannot
  reach the worker's mode is refused there, before anything starts.
- ``for_instance`` (where the instance lives): the set the instance sees, a fresh copy of a
  private set; ``LimitsAttribute`` makes it ``self.limits``, already inside ``__init__``.
- ``CallGate``: the call unit of a ``CallLimit``, taken before every call (only workers that
  have one pay anything per call).
- ``AttemptUnits``: while a retried call runs, the resource units its attempts acquire are
  tracked, so those a failed attempt still holds go back before the back-off.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
import types
from collections.abc import Callable
from typing import Any, Union, overload

from .limits import LimitPool, LimitSet, ResourceLimit
from .limits.definitions import CALL_KEY
from .limits.limit_set import held_in_attempt
from .options import WorkerOptions

Limits = Union[LimitSet, LimitPool]

# The worker modes a *shared* set of each mode can serve. A private set (shared=False) serves
# every mode: each worker gets its own copy, made where its instance lives.
_SERVES = {
    "thread": ("sync", "thread", "asyncio"),
    "process": ("sync", "thread", "asyncio", "process"),
    # A ray set is reached through Ray, so by this process (and its threads) and by ray actors;
    # a process worker's child is not connected to Ray. A ray worker accepts only a ray set: a
    # process set's shared memory does not reach actors on other machines.
    "ray": ("sync", "thread", "asyncio", "ray"),
}
_REACH = {
    "thread": "the threads of one process",
    "process": "the processes of one machine",
    "ray": "the Ray actors and drivers of a cluster (a process worker's child is not connected to Ray)",
}
# The shared set a pool makes of a list of limits, per pool mode.
_POOL_SET_MODE = {"thread": "thread", "process": "process", "ray": "ray"}
_FIX = {
    "process": "LimitSet(..., shared=True, mode='process')",
    "ray": "LimitSet(..., shared=True, mode='ray')",
}


def bind_limits(options: WorkerOptions) -> WorkerOptions:
    """``options`` with ``limits`` as the workers will use it (called once, at ``init()``).

    A list of limits is one worker's private set, or for a pool one set shared by its workers.
    A shared set (or a ``LimitPool`` of them) is checked against the worker's mode."""
    limits, mode = options.limits, options.mode.value
    if isinstance(limits, tuple):
        if not limits:
            limits = None
        elif options.is_pool:
            limits = LimitSet(limits, shared=True, mode=_POOL_SET_MODE[mode])
        else:
            limits = LimitSet(limits)
    elif limits is not None and limits.shared and mode not in _SERVES[limits.mode]:
        kind = "LimitPool of sets" if isinstance(limits, LimitPool) else "LimitSet"
        raise ValueError(
            f"limits: a {kind} with shared=True, mode={limits.mode!r} is shared by "
            f"{_REACH[limits.mode]} "
            f"and cannot serve a mode={mode!r} worker; use {_FIX.get(mode, _FIX['ray'])}, or "
            "shared=False to give each worker its own copy"
        )
    if limits is options.limits:
        return options
    return dataclasses.replace(options, limits=limits)


def for_instance(limits: Limits | None) -> Limits:
    """The set an instance sees: a shared set (or pool) as it is, a private one copied fresh
    (each worker its own), the empty set when there are none."""
    if limits is None:
        return LimitSet()
    if isinstance(limits, tuple):  # not through ``bind_limits`` (a runtime built directly)
        return LimitSet(limits)
    return limits if limits.shared else limits.private_copy()


def _sets(limits: Limits) -> tuple[LimitSet, ...]:
    return limits.limit_sets if isinstance(limits, LimitPool) else (limits,)


def resource_sets(limits: Limits) -> tuple[LimitSet, ...] | None:
    """The sets of ``limits`` that have resource limits (None: none has, nothing to track)."""
    sets = tuple(s for s in _sets(limits) if any(isinstance(limit, ResourceLimit) for limit in s))
    return sets or None


# ---- ``self.limits``: instance -> its worker's set ----
#
# The attribute is a class-level descriptor, so nothing is stored on the instance (classes with
# ``__slots__``, their own ``__new__``, pydantic and morphic models all work) and it can be read
# inside ``__init__``. Instances are looked up by id, each entry keeping its instance, so an id
# is never mistaken for another object's (the runtime removes the entry when it closes).

_BOUND: dict[int, tuple[object, Limits]] = {}
_building = threading.local()  # the binding of the instance being constructed in this thread
_OUTSIDE = LimitSet()  # what an instance made outside any worker sees


class _Binding:
    __slots__ = ("ids", "limits")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.ids: list[int] = []


class LimitsAttribute:
    """``self.limits``: the worker's ``LimitSet`` (or ``LimitPool``); an empty set that always
    grants when it has no limits. An instance attribute of the same name (the user's own, or a
    model field) takes precedence: this is a non-data descriptor."""

    @overload
    def __get__(self, instance: None, owner: Any = None) -> LimitsAttribute: ...
    @overload
    def __get__(self, instance: object, owner: Any = None) -> Limits: ...

    def __get__(self, instance: object | None, owner: Any = None) -> Any:
        if instance is None:
            return self
        entry = _BOUND.get(id(instance))
        if entry is not None and entry[0] is instance:
            return entry[1]
        binding = getattr(_building, "binding", None)
        if binding is None:
            return _OUTSIDE
        # read inside __init__: bound now, so threads the __init__ starts see it too
        _BOUND[id(instance)] = (instance, binding.limits)
        binding.ids.append(id(instance))
        return binding.limits


LIMITS_ATTRIBUTE = LimitsAttribute()


def construct_with(limits: Limits, build: Callable[[], Any]) -> Any:
    """``build()`` the instance with ``self.limits`` readable during its ``__init__``, then bind it."""
    previous = getattr(_building, "binding", None)
    binding = _building.binding = _Binding(limits)
    try:
        instance = build()
    finally:
        _building.binding = previous
        for key in binding.ids:  # ours again below, or the leftovers of a failed __init__
            _BOUND.pop(key, None)
    _BOUND[id(instance)] = (instance, limits)
    return instance


def unbind(instance: object) -> None:
    entry = _BOUND.get(id(instance))
    if entry is not None and entry[0] is instance:
        del _BOUND[id(instance)]


# ---- a CallLimit: one unit per call ----


class CallGate:
    """Takes one ``call_count`` unit before a call runs (and no resource unit: those the method
    takes itself). ``try_take`` is the asyncio fast path; it refuses while a call of this worker
    already waits, so calls are granted in the order they came."""

    __slots__ = (
        "_acquire",
        "_async_acquire",
        "_compiled",
        "_grant_now",
        "_remote",
        "_request",
        "_try_acquire",
        "_waiting",
    )

    def __init__(self, limits: Limits) -> None:
        resources = {limit.key for s in _sets(limits) for limit in s if isinstance(limit, ResourceLimit)}
        # None takes 1 of every call and resource limit and touches no rate limit: the fastest request
        self._request = {CALL_KEY: 1, **dict.fromkeys(sorted(resources), 0)} if resources else None
        self._acquire = limits.acquire
        self._async_acquire = limits.async_acquire
        self._try_acquire = limits.try_acquire
        self._waiting = 0
        self._grant_now: Callable[..., Any] | None = None
        # a set kept elsewhere (a ray set): every try is a round trip, so the asyncio path never
        # tries (it would block the loop) and a blocking take asks once, waiting in line
        self._remote = any(s.remote for s in _sets(limits))
        if isinstance(limits, LimitSet) and not self._remote:
            # The per-call fast path: a call unit is never given back, so no Acquisition is
            # needed; the request is compiled once and granted in one hold of the set's lock.
            self._compiled = limits._compile(self._request)
            self._grant_now = limits._grant_now

    def take(self) -> None:
        grant = self._grant_now
        if grant is None or grant(*self._compiled) is None:
            self._acquire(self._request)  # wait in line

    def try_take(self) -> bool:
        if self._waiting or self._remote:
            return False
        grant = self._grant_now
        if grant is not None:
            return grant(*self._compiled) is not None
        return self._try_acquire(self._request).successful

    async def take_async(self) -> None:
        self._waiting += 1
        try:
            await self._async_acquire(self._request)
        finally:
            self._waiting -= 1

    def before(self, fn: Callable[..., Any], is_async: bool) -> Callable[..., Any]:
        """``fn`` taking its call unit first (each retried attempt takes one)."""
        if is_async:
            take_async = self.take_async

            async def gated_async(*args: Any, **kwargs: Any) -> Any:
                await take_async()
                return await fn(*args, **kwargs)

            return gated_async
        take = self.take

        def gated(*args: Any, **kwargs: Any) -> Any:
            take()
            return fn(*args, **kwargs)

        return gated


def call_gate(limits: Limits) -> CallGate | None:
    """The gate of a worker whose limits have a ``CallLimit``; None otherwise (no cost per call)."""
    return CallGate(limits) if any(CALL_KEY in s for s in _sets(limits)) else None


# ---- retries: units a failed attempt still holds ----


class AttemptUnits:
    """Tracks, during one retried call, the acquisitions of the worker's resource limits made in
    its thread or task (``with AttemptUnits(sets) as units:``); ``release`` (the retry loop's
    ``on_attempt_failed``) returns those still held."""

    __slots__ = ("_held", "_sets", "_token")

    def __init__(self, sets: tuple[LimitSet, ...]) -> None:
        self._sets = sets
        self._held: list = []

    def __enter__(self) -> AttemptUnits:
        self._token = held_in_attempt.set(self._held)
        return self

    def __exit__(self, *exc: object) -> None:
        held_in_attempt.reset(self._token)

    def release(self, attempt: int) -> None:
        held, self._held[:] = list(self._held), []
        for acquisition in held:
            if not acquisition.released and any(acquisition.limit_set is s for s in self._sets):
                acquisition.release()


# ---- functions with a ``limits`` parameter (``@task``, ``TaskWorker.submit``) ----


def takes_limits(fn: Callable[..., Any], nargs: int, kwargs: dict) -> bool:
    """Should ``fn(*args, **kwargs)`` (``nargs`` positional) get ``limits=`` from the worker?
    Yes if it has a parameter named ``limits`` the call does not fill already."""
    if "limits" in kwargs:
        return False
    if type(fn) is types.FunctionType and "__wrapped__" not in fn.__dict__:
        code = fn.__code__
        names = code.co_varnames
        if "limits" not in names:
            return False
        at = names.index("limits")
        if at < code.co_posonlyargcount:
            return False
        return at >= nargs if at < code.co_argcount else at < code.co_argcount + code.co_kwonlyargcount
    try:  # decorated functions, partials, bound methods, callable objects: the slower way
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    for at, parameter in enumerate(parameters):
        if parameter.name == "limits":
            if parameter.kind is parameter.KEYWORD_ONLY:
                return True
            return parameter.kind is parameter.POSITIONAL_OR_KEYWORD and at >= nargs
    return False
