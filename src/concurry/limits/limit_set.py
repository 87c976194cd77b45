"""``LimitSet``: a group of limits acquired together, and the ``Acquisition`` it grants.

A set compiles each request into (limit index, amount) pairs and asks its ``Ledger`` (the grant
rules) to grant them over its store's state, under the store's lock. The store is a Python list
for a set that lives in one process (``shared=False``, or ``shared=True, mode="thread"``) and
shared memory for ``shared=True, mode="process"``. The uncontended path is one lock hold on
acquire and one on release; only a request that must wait registers as a waiter.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any

from ..constants import ExecutionMode
from .definitions import Limit, RateLimit, ResourceLimit
from .ledger import INF, Ledger
from .process_store import ProcessStore
from .thread_store import ThreadStore

logger = logging.getLogger("concurry")

_MODES = ("thread", "process", "ray")
_WAITER_SLOTS = {"thread": 256, "process": 128}
_HOLDER_SLOTS = 128  # processes that may hold resource units of one process-shared set at once
# While blocked on a resource, a process-shared waiter also checks this often whether a holder
# died (a dead process cannot wake anyone); every other wake-up comes from a state change.
_DEAD_HOLDER_CHECK = 0.5
# A waiter that found the waiter table full has no place in the queue, so no id to be woken by:
# it checks back this often (and takes a place as soon as one is free).
_UNQUEUED_CHECK = 0.02
_GRANTED = -2  # the slot of a waiter that was granted (and so left the queue)
_monotonic = time.monotonic
# While a worker's retried call runs, the acquisitions holding resource units made in its thread
# or task are appended here (the runtime sets the list), so the units a failed attempt still
# holds can be given back before the back-off.
held_in_attempt: ContextVar[list | None] = ContextVar("concurry_held_in_attempt", default=None)


# Stores of shared sets kept elsewhere, by mode, registered by their modules (``ray_store``, which
# the package imports; it imports Ray only when a set is made): (set, limits, store) -> the store.
_SHARED_STORES: dict[str, Callable[[LimitSet, tuple, Any], Any]] = {}


def register_shared_store(mode: str, make: Callable[[LimitSet, tuple, Any], Any]) -> None:
    _SHARED_STORES[mode] = make


def _mode(value: Any) -> str:
    mode = ExecutionMode.parse(value, "LimitSet mode").value
    if mode not in _MODES:
        raise ValueError(
            f"LimitSet mode={value!r} is not accepted; use 'thread' (threads of one process), "
            "'process' (processes of one machine) or 'ray' (a Ray cluster)"
        )
    return mode


class LimitSet:
    """Limits acquired together, atomically: ``with limits.acquire(requested={"tokens": 100}):``.

    ``shared=False`` (the default) is a private limiter: given to a worker, each worker gets its
    own copy, living where its instance lives. ``shared=True`` is one limiter for everyone it is
    given to: the threads of this process (``mode="thread"``), every process of this machine
    (``mode="process"``, state in shared memory) or every actor and driver of a Ray cluster
    (``mode="ray"``, state in one Ray actor: see ``ray_store``). ``config`` is any dict handed
    back, as a copy, by each acquisition (e.g. which API key this set stands for)."""

    remote = False  # True for a set kept in another process (a ray set): each request is a round trip

    def __init__(
        self,
        limits: Iterable[Limit] = (),
        shared: bool = False,
        mode: ExecutionMode | str = "thread",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(limits, Limit):
            limits = [limits]
        limits = list(limits)
        keys: set[str] = set()
        for limit in limits:
            if not isinstance(limit, Limit):
                raise TypeError(
                    f"LimitSet limits must be RateLimit, CallLimit or ResourceLimit objects, got {limit!r}"
                )
            if limit.key in keys:
                raise ValueError(f"LimitSet limits have the key {limit.key!r} twice; each key once")
            keys.add(limit.key)
        if not isinstance(shared, bool):
            raise TypeError(f"LimitSet shared must be True or False, got {shared!r}")
        if config is not None and not isinstance(config, Mapping):
            raise TypeError(f"LimitSet config must be a dict, got {config!r}")
        self._build(tuple(limits), shared, _mode(mode), dict(config or {}), None)

    def _build(
        self, limits: tuple, shared: bool, mode: str, config: dict, store: Any, waiter_slots: int = 0
    ) -> None:
        if shared and mode in _SHARED_STORES:  # e.g. mode="ray": the set becomes that mode's kind
            store = _SHARED_STORES[mode](self, limits, store)
        self.limits: tuple[Limit, ...] = limits
        self.shared = shared
        self.mode = mode
        self._config = config
        cross_process = shared and mode == "process"
        ledger = Ledger(
            limits,
            waiter_slots or _WAITER_SLOTS[mode if cross_process else "thread"],
            _HOLDER_SLOTS if cross_process else 0,
        )
        if store is None:
            store = ProcessStore(ledger.size) if cross_process else ThreadStore(ledger.size)
            with store.lock:
                ledger.init(store.view, _monotonic())
        self._ledger = ledger
        self._store = store
        self._index = {limit.key: i for i, limit in enumerate(limits)}
        self._unknown_logged: set[str] = set()
        self._compiled: dict[tuple, tuple] = {}
        self._holder = -1  # this process's row of a process-shared ledger's holder table
        self._holder_pid = 0
        always = {i: 1 for i, limit in enumerate(limits) if type(limit) is not RateLimit}
        self._always = always  # resource and call limits: 1 unit unless requested otherwise
        self._resource_mask = sum(
            1 << i for i, limit in enumerate(limits) if isinstance(limit, ResourceLimit)
        )
        self._default = self._pack(always)

    # ---- pickling: a private set travels as its definition, a shared one as its state ----

    def __reduce__(self) -> tuple:
        if not self.shared:
            return (_rebuild, (self.limits, False, self.mode, self._config, None))
        if self.mode == "thread":
            raise TypeError(
                "a LimitSet(shared=True, mode='thread') is shared by the threads of one process and "
                "cannot be sent to another process; use LimitSet(..., shared=True, mode='process')"
            )
        return (_rebuild, (self.limits, True, self.mode, self._config, self._store))

    def private_copy(self) -> LimitSet:
        """A new set with the same limits and fresh state (what a worker gets of a private set)."""
        return _rebuild(self.limits, False, self.mode, self._config, None)

    # ---- what the set holds ----

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._index)

    def __getitem__(self, key: str) -> Limit:
        return self.limits[self._index[key]]

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self.limits)

    def __iter__(self):
        return iter(self.limits)

    def __repr__(self) -> str:
        return f"LimitSet({list(self.limits)!r}, shared={self.shared}, mode={self.mode!r})"

    # ---- requests ----

    def _pack(self, amounts: Mapping[int, int]) -> tuple[tuple[tuple[int, int], ...], int]:
        request = tuple((i, a) for i, a in sorted(amounts.items()) if a > 0)
        mask = 0
        for i, _ in request:
            mask |= 1 << i
        return request, mask

    def _compile(self, requested: Any) -> tuple[tuple[tuple[int, int], ...], int]:
        """``requested`` as (limit index, amount) pairs and their limits' bit mask; a request
        seen before is looked up (checked once, the first time)."""
        if requested is None:
            return self._default
        try:
            compiled = self._compiled[tuple(requested.items())]
            for amount in requested.values():  # True and 1.0 equal 1 (and hash alike): refuse them
                if type(amount) is not int:
                    break
            else:
                return compiled
        except (KeyError, TypeError, AttributeError):
            pass
        compiled = self._check_request(requested)
        if len(self._compiled) >= 1024:
            self._compiled.clear()
        try:
            self._compiled[tuple(requested.items())] = compiled
        except TypeError:  # an unhashable amount: it was refused above
            pass
        return compiled

    def _check_request(self, requested: Any) -> tuple[tuple[tuple[int, int], ...], int]:
        if not isinstance(requested, Mapping):
            raise TypeError(f"requested must be a dict of limit key (str) -> units (int), got {requested!r}")
        amounts = dict(self._always)
        for key, amount in requested.items():
            if not isinstance(key, str):
                raise TypeError(f"requested keys must be limit keys (str), got {key!r}")
            if isinstance(amount, bool) or not isinstance(amount, int):
                raise TypeError(f"requested[{key!r}] must be an int number of units >= 0, got {amount!r}")
            if amount < 0:
                raise ValueError(f"requested[{key!r}] must be >= 0, got {amount}")
            i = self._index.get(key)
            if i is None:
                if amount:  # 0 of a key it lacks asks nothing (a worker's call unit over a LimitPool)
                    self._log_unknown(key)
                continue
            if amount > self.limits[i].capacity:
                raise ValueError(
                    f"requested[{key!r}]={amount} is more than the limit's capacity "
                    f"{self.limits[i].capacity:g}: it could never be granted"
                )
            amounts[i] = amount
        return self._pack(amounts)

    def _log_unknown(self, key: str) -> None:
        if key not in self._unknown_logged:
            self._unknown_logged.add(key)
            logger.warning(
                "LimitSet has no limit with key %r (its keys: %s); requests for it are granted",
                key,
                ", ".join(map(repr, self._index)) or "none",
            )

    # ---- acquiring ----

    def acquire(
        self, requested: Mapping[str, int] | None = None, timeout: float | None = None
    ) -> Acquisition:
        """Wait until every requested unit is available at once, take them, and return the
        acquisition (a context manager that returns resource units when it ends).
        ``TimeoutError`` if ``timeout`` seconds pass first; nothing is held while waiting."""
        request, mask = self._compile(requested)
        if timeout is not None:
            _check_timeout(timeout)
        granted_at = self._grant_now(request, mask)
        if granted_at is None:
            granted_at = self._wait_for_grant(request, mask, timeout)
        return Acquisition(self, request, mask, granted_at)

    def try_acquire(self, requested: Mapping[str, int] | None = None) -> Acquisition:
        """Take the units if all are available now; never waits. ``successful`` tells."""
        request, mask = self._compile(requested)
        granted_at = self._grant_now(request, mask)
        if granted_at is None:
            return Acquisition(self, request, mask, 0.0, successful=False)
        return Acquisition(self, request, mask, granted_at)

    async def async_acquire(
        self, requested: Mapping[str, int] | None = None, timeout: float | None = None
    ) -> Acquisition:
        """``acquire`` for coroutines: waits without blocking the event loop."""
        request, mask = self._compile(requested)
        if timeout is not None:
            _check_timeout(timeout)
        granted_at = self._grant_now(request, mask)
        if granted_at is None:
            granted_at = await self._async_wait_for_grant(request, mask, timeout)
        return Acquisition(self, request, mask, granted_at)

    def _grant_now(self, request: tuple, mask: int) -> float | None:
        store, ledger = self._store, self._ledger
        with store.lock:
            now = _monotonic()
            if ledger.attempt(store.view, request, mask, 0.0, now) == 0.0:
                if ledger.holder_slots and ledger.resources:
                    self._hold(request, 1.0)
                return now
        return None

    def _hold(self, request: tuple, sign: float) -> None:
        # with the lock held: record resource units against this process (process-shared sets)
        store, ledger = self._store, self._ledger
        if self._holder_pid != store.pid:
            self._holder, self._holder_pid = ledger.holder_slot(store.view, store.pid), store.pid
        ledger.hold(store.view, self._holder, request, sign)

    def _retry(self, request: tuple, mask: int, queued: list, waiter_id: float) -> tuple[float, list[float]]:
        """One more attempt as a waiter, queued first if it has no place yet (``queued`` is its
        [slot, ticket], updated here): (-grant time, the waiters to wake) when granted, else the
        seconds to wait."""
        store, ledger = self._store, self._ledger
        view = store.view
        with store.lock:
            if queued[0] < 0:  # not queued yet, or the table was full last time: try (again)
                queued[0], queued[1] = ledger.register(view, mask, store.pid, waiter_id)
            now = _monotonic()
            wait = ledger.attempt(view, request, mask, queued[1], now)
            if wait == INF and ledger.holder_slots and ledger.reclaim_dead(view):
                wait = ledger.attempt(view, request, mask, queued[1], now)
            if wait:
                return wait, []
            if ledger.holder_slots and ledger.resources:
                self._hold(request, 1.0)
            ledger.unregister(view, queued[0])
            queued[0] = _GRANTED
            return -now, ledger.waiter_ids(view) if view[1] else []

    def _wake(self, ids: list[float]) -> None:
        """Wake ``ids`` (after the lock is released). A waiter whose process died cannot be woken
        (the store tells): it is taken out of the queue and those behind it are woken instead."""
        store = self._store
        dead = store.wake(ids)
        while dead:
            with store.lock:
                self._ledger.forget_waiters(store.view, dead)
                ids = self._ledger.waiter_ids(store.view)
            dead = store.wake(ids)

    def _leave(self, slot: int) -> None:
        if slot < 0:  # never got a place in the queue: nobody waits behind it
            return
        store = self._store
        with store.lock:
            self._ledger.unregister(store.view, slot)
            ids = self._ledger.waiter_ids(store.view)
        self._wake(ids)  # those queued behind this waiter may go now

    def _sleep_for(self, wait: float, deadline: float | None, slot: int) -> float | None:
        if wait == INF:
            wait = _DEAD_HOLDER_CHECK if self._ledger.holder_slots else None  # type: ignore[assignment]
        if slot < 0:  # no place in the queue, so nobody wakes it: check back soon
            wait = _UNQUEUED_CHECK if wait is None else min(wait, _UNQUEUED_CHECK)
        if deadline is not None:
            left = deadline - _monotonic()
            if left <= 0:
                raise TimeoutError("LimitSet acquire timed out before every requested unit was available")
            wait = left if wait is None else min(wait, left)
        return wait

    def _wait_for_grant(self, request: tuple, mask: int, timeout: float | None) -> float:
        store = self._store
        deadline = None if timeout is None else _monotonic() + timeout
        waiter = store.thread_waiter()
        queued = [-1, 0.0]
        try:
            while True:
                wait, ids = self._retry(request, mask, queued, waiter.id)
                if wait < 0:
                    self._wake(ids)
                    return -wait
                waiter.wait(self._sleep_for(wait, deadline, queued[0]))
        finally:
            if queued[0] != _GRANTED:
                self._leave(queued[0])
            if not store.shared_across_processes:
                store.forget(waiter)

    async def _async_wait_for_grant(self, request: tuple, mask: int, timeout: float | None) -> float:
        store = self._store
        deadline = None if timeout is None else _monotonic() + timeout
        waiter = store.loop_waiter()
        queued = [-1, 0.0]
        try:
            while True:
                wait, ids = self._retry(request, mask, queued, waiter.id)
                if wait < 0:
                    self._wake(ids)
                    return -wait
                await waiter.wait(self._sleep_for(wait, deadline, queued[0]))
        finally:
            if queued[0] != _GRANTED:
                self._leave(queued[0])
            store.forget(waiter)

    # ---- what an acquisition does on release and update ----

    def _release(self, request: tuple) -> None:
        store, ledger = self._store, self._ledger
        with store.lock:
            ledger.release(store.view, request)
            if ledger.holder_slots:
                self._hold(request, -1.0)
            ids = ledger.waiter_ids(store.view) if store.view[1] else None
        if ids:
            self._wake(ids)

    def _adjust(self, deltas: list[tuple[int, float]], granted_at: float) -> None:
        store, ledger = self._store, self._ledger
        with store.lock:
            now = _monotonic()
            for i, delta in deltas:
                ledger.adjust(store.view, i, delta, granted_at, now)
            ids = ledger.waiter_ids(store.view) if store.view[1] else None
        if ids:
            self._wake(ids)


def _rebuild(limits: tuple, shared: bool, mode: str, config: dict, store: Any) -> LimitSet:
    limit_set = object.__new__(LimitSet)
    limit_set._build(limits, shared, mode, config, store)
    return limit_set


def _check_timeout(timeout: Any) -> None:
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or math.isnan(timeout)
        or timeout < 0
    ):
        raise ValueError(f"timeout must be None or a number of seconds >= 0, got {timeout!r}")


class Acquisition:
    """Units granted by a ``LimitSet``: a context manager (sync and async) that returns the
    resource units when it ends. ``update(usage=...)`` corrects rate-limit usage to what was
    really used; ``config`` is a copy of the granting set's ``config``."""

    __slots__ = ("_holds", "_limit_set", "_request", "_usage", "granted_at", "released", "successful")

    def __init__(
        self, limit_set: LimitSet, request: tuple, mask: int, granted_at: float, successful: bool = True
    ) -> None:
        self._limit_set = limit_set
        self._request = request
        self._holds = mask & limit_set._resource_mask  # resource units to give back
        self._usage: dict[int, float] | None = None
        self.granted_at = granted_at
        self.successful = successful
        self.released = not successful
        if self._holds and successful:
            held = held_in_attempt.get()
            if held is not None:
                held.append(self)

    @property
    def config(self) -> dict[str, Any]:
        return self._limit_set.config

    @property
    def limit_set(self) -> LimitSet:
        return self._limit_set

    def update(self, usage: Mapping[str, int | float]) -> None:
        """The rate-limit units really used, per key (more or fewer than requested)."""
        if self.released:
            raise ValueError(
                "update() after the acquisition was released (or was not granted): call it inside the block"
            )
        if not isinstance(usage, Mapping):
            raise TypeError(f"usage must be a dict of limit key (str) -> units used, got {usage!r}")
        limit_set = self._limit_set
        if self._usage is None:
            self._usage = {i: float(a) for i, a in self._request}
        deltas = []
        for key, used in usage.items():
            if not isinstance(key, str):
                raise TypeError(f"usage keys must be limit keys (str), got {key!r}")
            if isinstance(used, bool) or not isinstance(used, (int, float)) or math.isnan(used):
                raise TypeError(f"usage[{key!r}] must be a number of units >= 0, got {used!r}")
            if used < 0:
                raise ValueError(f"usage[{key!r}] must be >= 0, got {used}")
            i = limit_set._index.get(key)
            if i is None:
                limit_set._log_unknown(key)
                continue
            if isinstance(limit_set.limits[i], ResourceLimit):
                raise ValueError(
                    f"usage[{key!r}]: {key!r} is a ResourceLimit; update() corrects rate-limit usage "
                    "(resource units are returned when the block ends)"
                )
            delta = used - self._usage.get(i, 0.0)
            self._usage[i] = float(used)
            if delta:
                deltas.append((i, delta))
        if deltas:
            limit_set._adjust(deltas, self.granted_at)

    def release(self) -> None:
        """Return the resource units now (leaving the block does this; a second call is a no-op)."""
        if not self.released:
            self.released = True
            if self._holds:
                self._limit_set._release(self._request)

    def __enter__(self) -> Acquisition:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> Acquisition:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<Acquisition successful={self.successful} {state} of {self._limit_set!r}>"
