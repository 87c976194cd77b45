"""``LimitSet(shared=True, mode="ray")``: one limiter for every actor, task and driver of a Ray
cluster, its state held by one Ray actor, the *limit keeper*.

- **The same rules.** The keeper holds a thread-mode ``LimitSet`` and grants through it, so a
  ray set has every guarantee of a local one (all or nothing, first come first served per key,
  rate accuracy); the caller checks its request (bad input, capacity, unknown keys) before any
  round trip and sends it compiled.
- **One round trip per acquire, none per release.** The keeper is an async actor: a request that
  must wait awaits its turn on the keeper's event loop, so the caller's one ``ray.get`` (or
  ``await``) returns when it is granted; nothing polls. Release and ``update`` are fire-and-forget
  calls (Ray runs one caller's calls to an actor in the order they were made).
- **Units of a holder that dies come back.** The first time a process holds units, it hands the
  keeper an ``ObjectRef`` it owns that never completes (the result of a keeper call that stays
  parked). When the owner of an object dies, Ray fails the object with ``OwnerDiedError`` for
  everyone who holds it: the keeper awaits it, and on that error takes back the units the
  process held. No polling, no dashboard or state API needed, and the delay is Ray's own
  failure detection (a killed actor is noticed at once).
- **Lifetime.** The keeper is made on first use (or when the set is first pickled): that starts
  a local Ray if none is running, as any ``.remote()`` does, so a set may be made before
  ``ray.init(address=...)``. It is owned by the process that made it (not detached): it goes
  with that driver and with ``ray.shutdown()``. A pickled set is a handle to the same keeper.

Ray is imported only when a ray set is made: ``import concurry`` never imports it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from .limit_set import Acquisition, LimitSet, _check_timeout, register_shared_store

logger = logging.getLogger("concurry")

# Coroutines the keeper runs at once: every waiter and every live holder's parked call is one.
_KEEPER_CONCURRENCY = 10_000
# Queue places of the keeper's set (a waiter beyond them still waits, checking back every 20 ms).
_KEEPER_WAITERS = 4096
_TRY = -1.0  # the timeout that means "do not wait" (try_acquire)


def import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ImportError(
            "LimitSet(shared=True, mode='ray') needs Ray, which is not installed: pip install 'concurry[ray]'"
        ) from e
    return ray


class LimitKeeper:
    """The actor holding a ray set's state (``ray.remote`` is applied when the first set is used).

    ``_held`` maps each holder (a Ray worker id: one process) to the resource units it holds, so
    they can be taken back when it dies; ``_waits`` its requests still waiting, cancelled then."""

    def __init__(self, limits: tuple) -> None:
        self._set = inner = object.__new__(LimitSet)
        inner._build(limits, False, "thread", {}, None, waiter_slots=_KEEPER_WAITERS)
        self._resources = frozenset(inner._ledger.resources)
        self._held: dict[str, dict[int, int]] = {}
        self._waits: dict[str, set[asyncio.Task]] = {}
        self._parked: dict[str, asyncio.Future] = {}
        self._watchers: dict[str, asyncio.Task] = {}
        self._gone: set[str] = set()

    async def acquire(self, request: tuple, mask: int, timeout: float | None, holder: str | None) -> Any:
        """The grant time, or None when refused (``try_acquire``) or timed out."""
        limit_set = self._set
        granted_at = limit_set._grant_now(request, mask)
        if granted_at is None:
            if timeout == _TRY:
                return None
            wait = asyncio.ensure_future(limit_set._async_wait_for_grant(request, mask, timeout))
            if holder is not None:
                self._waits.setdefault(holder, set()).add(wait)
            try:
                granted_at = await wait
            except TimeoutError:
                return None
            except asyncio.CancelledError:
                if wait.cancelled() and holder in self._gone:
                    return None  # its process died while it waited
                raise
            finally:
                if holder is not None:
                    self._waits[holder].discard(wait)
        if holder is not None:
            if holder in self._gone:  # its process died meanwhile: nobody will release these
                limit_set._release(request)
                return None
            held = self._held.setdefault(holder, {})
            for i, amount in request:
                if i in self._resources:
                    held[i] = held.get(i, 0) + amount
        return granted_at

    def release(self, request: tuple, holder: str | None) -> None:
        self._set._release(request)
        held = self._held.get(holder) if holder is not None else None
        if held:
            for i, amount in request:
                if i in held:
                    held[i] = max(0, held[i] - amount)

    def adjust(self, deltas: list, granted_at: float) -> None:
        self._set._adjust(deltas, granted_at)

    async def park(self, holder: str) -> None:
        """Stays pending for as long as ``holder`` lives: its result is the holder's sentinel."""
        if holder not in self._gone:
            self._parked[holder] = future = asyncio.get_running_loop().create_future()
            await future

    def watch(self, holder: str, sentinel: list) -> None:
        """Take back ``holder``'s units when its sentinel (``[park ObjectRef]``) fails."""
        if holder not in self._watchers:
            self._watchers[holder] = asyncio.ensure_future(self._await_death(holder, sentinel[0]))

    async def _await_death(self, holder: str, ref: Any) -> None:
        import ray

        try:
            await ref
        except ray.exceptions.ObjectLostError:  # OwnerDiedError: the holder's process is gone
            pass
        except Exception:  # not a death: keep its units (a leak is safer than a double grant)
            logger.exception("LimitSet(mode='ray'): watching holder %s failed", holder)
            return
        self._reclaim(holder)

    def _reclaim(self, holder: str) -> None:
        self._gone.add(holder)
        self._watchers.pop(holder, None)
        for wait in self._waits.pop(holder, ()):
            wait.cancel()
        held = self._held.pop(holder, None)
        if held:
            self._set._release(tuple((i, units) for i, units in held.items() if units))
        parked = self._parked.pop(holder, None)
        if parked is not None and not parked.done():
            parked.set_result(None)

    def state(self) -> dict[str, Any]:
        """Units in use per resource key and the holders known (for tests and debugging)."""
        inner = self._set
        view, ledger = inner._store.view, inner._ledger
        return {
            "in_use": {inner.limits[i].key: view[ledger.offsets[i]] for i in ledger.resources},
            "holders": {h: dict(units) for h, units in self._held.items() if any(units.values())},
            "waiting": int(view[1]),
        }


_ACTOR_CLASS: Any = None
_HOLDERS: dict[str, tuple[int, str]] = {}  # keeper id -> (pid, holder id) of this process
_HOLDERS_LOCK = threading.Lock()


def _actor_class(ray: Any) -> Any:
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        actor = ray.remote(num_cpus=0, max_concurrency=_KEEPER_CONCURRENCY)(LimitKeeper)
        _ACTOR_CLASS = actor
    return _ACTOR_CLASS


class RayStore:
    """The caller's end of a ray set: its keeper's handle, made on first use."""

    shared_across_processes = True

    def __init__(self, limits: tuple, keeper_id: str | None = None, handle: Any = None) -> None:
        self._limits = limits
        self.keeper_id = keeper_id or uuid.uuid4().hex
        self._handle = handle
        self._lock = threading.Lock()

    def keeper(self) -> Any:
        handle = self._handle
        if handle is None:
            with self._lock:
                if self._handle is None:
                    self._handle = _actor_class(import_ray()).remote(self._limits)
                handle = self._handle
        return handle

    def holder(self) -> str:
        """This process's holder id; the first time, the keeper is told to watch it."""
        pid = os.getpid()
        known = _HOLDERS.get(self.keeper_id)
        if known is not None and known[0] == pid:
            return known[1]
        with _HOLDERS_LOCK:
            known = _HOLDERS.get(self.keeper_id)
            if known is None or known[0] != pid:
                keeper = self.keeper()
                holder = import_ray().get_runtime_context().get_worker_id()
                # A call that stays parked: its result is owned by this process and fails for
                # the keeper when it dies. Sent before this process's first hold (calls of one
                # caller start in order), nested in a list so the keeper gets the ref itself.
                keeper.watch.remote(holder, [keeper.park.remote(holder)])
                known = _HOLDERS[self.keeper_id] = (pid, holder)
        return known[1]

    def __reduce__(self) -> tuple:
        return (RayStore, ((), self.keeper_id, self.keeper()))


class RayLimitSet(LimitSet):
    """A ``LimitSet(shared=True, mode="ray")`` (what ``LimitSet`` becomes for that mode): requests
    are checked here and granted by the keeper actor. ``granted_at`` is the keeper's
    ``time.monotonic()``."""

    _store: RayStore

    def _call(self, request: tuple, mask: int, timeout: float | None) -> Any:
        store = self._store
        holder = store.holder() if mask & self._resource_mask else None
        return store.keeper().acquire.remote(request, mask, timeout, holder)

    def _get(self, ref: Any, request: tuple, mask: int) -> Any:
        ray = import_ray()
        try:
            return ray.get(ref)
        except ray.exceptions.RayError:
            raise
        except BaseException:  # interrupted before the answer came: do not keep what it brings
            self._abandon(ref, request, mask)
            raise

    def _abandon(self, ref: Any, request: tuple, mask: int) -> None:
        """Stop waiting for ``ref``'s grant; if it was granted meanwhile, give the units back."""
        ray = import_ray()
        try:
            ray.cancel(ref)
        except Exception:
            pass
        if mask & self._resource_mask:

            def give_back(future: Any) -> None:
                if not future.cancelled() and future.exception() is None and future.result() is not None:
                    self._release(request)

            ref.future().add_done_callback(give_back)

    def acquire(
        self, requested: Mapping[str, int] | None = None, timeout: float | None = None
    ) -> Acquisition:
        request, mask = self._compile(requested)
        if timeout is not None:
            _check_timeout(timeout)
        granted_at = self._get(self._call(request, mask, timeout), request, mask)
        if granted_at is None:
            raise TimeoutError("LimitSet acquire timed out before every requested unit was available")
        return Acquisition(self, request, mask, granted_at)

    def try_acquire(self, requested: Mapping[str, int] | None = None) -> Acquisition:
        request, mask = self._compile(requested)
        granted_at = self._grant_now(request, mask)
        if granted_at is None:
            return Acquisition(self, request, mask, 0.0, successful=False)
        return Acquisition(self, request, mask, granted_at)

    async def async_acquire(
        self, requested: Mapping[str, int] | None = None, timeout: float | None = None
    ) -> Acquisition:
        request, mask = self._compile(requested)
        if timeout is not None:
            _check_timeout(timeout)
        ref = self._call(request, mask, timeout)
        answer = asyncio.wrap_future(ref.future())
        try:
            granted_at = await asyncio.shield(answer)  # a cancelled caller leaves the answer to _abandon
        except asyncio.CancelledError:
            self._abandon(ref, request, mask)
            raise
        if granted_at is None:
            raise TimeoutError("LimitSet acquire timed out before every requested unit was available")
        return Acquisition(self, request, mask, granted_at)

    def _grant_now(self, request: tuple, mask: int) -> float | None:
        return self._get(self._call(request, mask, _TRY), request, mask)

    def _release(self, request: tuple) -> None:
        store = self._store
        store.keeper().release.remote(request, store.holder())

    def _adjust(self, deltas: list[tuple[int, float]], granted_at: float) -> None:
        self._store.keeper().adjust.remote(deltas, granted_at)

    def keeper_state(self) -> dict[str, Any]:
        """The keeper's units in use per resource key, holders and waiter count (a round trip)."""
        return import_ray().get(self._store.keeper().state.remote())


def _ray_store(limit_set: LimitSet, limits: tuple, store: RayStore | None) -> RayStore:
    if store is None:
        import_ray()  # fail here, with the install hint, rather than at first use
        store = RayStore(limits)
    limit_set.__class__ = RayLimitSet
    return store


register_shared_store("ray", _ray_store)
