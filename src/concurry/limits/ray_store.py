"""``LimitSet(shared=True, mode="ray")``: one limiter for every actor, task and driver of a Ray
cluster, its state held by one Ray actor, the *limit keeper*.

- **The same rules.** The keeper holds a thread-mode ``LimitSet`` and grants through it, so a
  ray set has every guarantee of a local one (all or nothing, first come first served per key,
  rate accuracy); the caller checks its request (bad input, capacity, unknown keys) before any
  round trip and sends it compiled.
- **One round trip per acquire, none per release.** The keeper is an async actor: a request that
  must wait awaits its turn on the keeper's event loop, so the caller's one ``ray.get`` (or
  ``await``) returns when it is granted; nothing polls. Release and ``update`` are fire-and-forget
  calls. An async actor runs calls out of order, so each acquire carries how many of those its
  process has sent, and the keeper runs it only after all of them: a process that released
  (or updated) and then acquires is served as if the calls were synchronous.
- **A caller that gives up withdraws.** An acquire interrupted before its answer came (a
  timeout around ``async_acquire``, Ctrl-C in ``acquire``) sends ``withdraw`` with its request
  number: the keeper ends the request if it is still waiting, and the caller gives back a grant
  that was on its way. ``ray.cancel`` is not used: on a call the keeper has just answered, Ray
  may fail the caller's ref with ``TaskCancelledError`` all the same, and that grant was lost.
- **Units of a caller that dies come back.** The first time a process uses the keeper, it hands
  it an ``ObjectRef`` it owns that never completes (the result of a keeper call that stays
  parked). When the owner of an object dies, Ray fails the object with ``OwnerDiedError`` for
  everyone who holds it: the keeper awaits it, and on that error takes back the units the
  process held and drops its waiting requests. No polling, no dashboard or state API needed;
  the delay is Ray's own failure detection (about 2 s here for an actor killed with ray.kill).
- **Lifetime.** The keeper is made on first use (or when the set is first pickled): that starts
  a local Ray if none is running, as any ``.remote()`` does, so a set may be made before
  ``ray.init(address=...)``. It is owned by the process that made it (not detached): it goes
  with that driver and with ``ray.shutdown()``, and ends once that driver's set is dropped and no
  pickled copy (a handle to the same keeper) is left. As with a process-shared set, keep the
  set in the driver while others use it: after it is dropped, the units of a caller that dies
  are no longer taken back.

Ray is imported only when a ray set is made: ``import concurry`` never imports it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from typing import Any

from .limit_set import Acquisition, LimitSet, _check_timeout, register_shared_store

logger = logging.getLogger("concurry")

# Coroutines the keeper runs at once: every waiter and every live holder's parked call is one.
_KEEPER_CONCURRENCY = 10_000
# Queue places of the keeper's set (a waiter beyond them still waits, checking back every 20 ms).
_KEEPER_WAITERS = 4096
_TRY = -1.0  # the timeout that means "do not wait" (try_acquire)
# An acquire waits at most this long for the calls its process sent before it (they always come
# unless the process died; this only keeps a lost call from blocking it for ever).
_CATCH_UP = 10.0
# A withdrawal whose acquire had already ended is forgotten after this many seconds (one whose
# acquire has not arrived yet is used when it does: it comes right behind, from the same caller).
_WITHDRAWN_KEPT = 60.0


def _dumps(args: tuple) -> bytes:
    # Calls carry their arguments pickled into one bytes object: Ray passes bytes on a faster path
    # than a few small Python values (measured: about 150 us less per call).
    return pickle.dumps(args, pickle.HIGHEST_PROTOCOL)


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

    Callers are Ray worker ids (one per process). ``_held``: the resource units each holds, taken
    back when it dies; ``_waits``: its requests still waiting (by request number), dropped then;
    ``_withdrawn``: (caller, request number) its caller gave up on, and when; ``_done``: how many
    fire-and-forget calls of each it has run, ``_behind``: its acquires waiting for the rest."""

    def __init__(self, limits: tuple) -> None:
        self._set = inner = object.__new__(LimitSet)
        inner._build(limits, False, "thread", {}, None, waiter_slots=_KEEPER_WAITERS)
        self._resource_mask = inner._resource_mask
        self._resources = frozenset(inner._ledger.resources)
        self._held: dict[str, dict[int, int]] = {}
        self._waits: dict[str, dict[int, asyncio.Future]] = {}
        self._withdrawn: dict[tuple[str, int], float] = {}
        self._done: dict[str, int] = {}
        self._behind: dict[str, list[tuple[int, asyncio.Future]]] = {}
        self._parked: dict[str, asyncio.Future] = {}
        self._watchers: dict[str, asyncio.Future] = {}
        self._gone: set[str] = set()
        self._closed = False

    async def acquire(self, packed: bytes) -> Any:
        """The grant time, or None when refused (``try_acquire``) or timed out. Runs after the
        ``after`` fire-and-forget calls ``caller`` sent before it."""
        request, mask, timeout, caller, after, number = pickle.loads(packed)
        if caller in self._gone:  # sent before its process died, come after
            return None
        if after > self._done.get(caller, 0):
            await self._catch_up(caller, after)
        if self._withdrawn.pop((caller, number), None) is not None:  # given up before it came
            return None
        limit_set = self._set
        granted_at = limit_set._grant_now(request, mask)
        if granted_at is None:
            if timeout == _TRY:
                return None
            wait = asyncio.ensure_future(limit_set._async_wait_for_grant(request, mask, timeout))
            waits = self._waits.setdefault(caller, {})
            waits[number] = wait
            try:
                granted_at = await wait
            except TimeoutError:
                return None
            except asyncio.CancelledError:
                if wait.cancelled() and (
                    caller in self._gone or self._withdrawn.pop((caller, number), None) is not None
                ):
                    return None  # its process died, or it gave up, while it waited
                granted = wait.done() and not wait.cancelled() and wait.exception() is None
                if granted and mask & self._resource_mask:
                    # the caller gave up after the grant, before this call resumed: it will
                    # never see the grant, so the units go back here
                    limit_set._release(request)
                raise
            finally:
                waits.pop(number, None)
        if mask & self._resource_mask:
            if caller in self._gone:  # its process died meanwhile: nobody will release these
                limit_set._release(request)
                return None
            held = self._held.setdefault(caller, {})
            for i, amount in request:
                if i in self._resources:
                    held[i] = held.get(i, 0) + amount
        return granted_at

    async def release(self, packed: bytes) -> None:
        request, caller = pickle.loads(packed)
        if caller in self._gone:  # sent before its process died, come after: already taken back
            return
        self._count(caller)
        self._set._release(request)
        held = self._held.get(caller)
        if held:
            for i, amount in request:
                if i in held:
                    held[i] = max(0, held[i] - amount)

    async def withdraw(self, packed: bytes) -> None:
        """The caller gave up on its request ``number``: end it if it waits (it answers None);
        if it has not come yet, it answers None when it does. (A grant already sent is the
        caller's to give back.)"""
        number, caller = pickle.loads(packed)
        if caller in self._gone:
            return
        self._count(caller)
        now = time.monotonic()
        withdrawn = self._withdrawn
        while withdrawn:  # oldest first: forget those whose acquire had already ended
            oldest = next(iter(withdrawn))
            if now - withdrawn[oldest] < _WITHDRAWN_KEPT:
                break
            del withdrawn[oldest]
        withdrawn[caller, number] = now
        wait = self._waits.get(caller, {}).get(number)
        if wait is not None:
            wait.cancel()

    async def adjust(self, packed: bytes) -> None:
        deltas, granted_at, caller = pickle.loads(packed)
        if caller in self._gone:
            return
        self._count(caller)
        self._set._adjust(deltas, granted_at)

    async def park(self, caller: str) -> None:
        """Stays pending for as long as ``caller`` lives (or until ``close``): its result is the
        caller's sentinel."""
        if caller not in self._gone and not self._closed:
            self._parked[caller] = future = asyncio.get_running_loop().create_future()
            await future

    async def close(self) -> None:
        """The set's maker dropped it: end the parked calls. Ray ends an actor whose handles are
        all gone only once its pending calls are done, so they would keep the keeper for ever.
        Callers still holding a copy keep using it, without the watch on their death."""
        self._closed = True
        parked, self._parked = self._parked, {}
        for future in parked.values():
            if not future.done():
                future.set_result(None)

    async def watch(self, sentinel: list, caller: str) -> None:
        """Forget ``caller`` (and take back its units) when its sentinel ``[park ref]`` fails."""
        self._count(caller)
        if caller not in self._watchers:
            self._watchers[caller] = asyncio.ensure_future(self._await_death(caller, sentinel[0]))

    def _count(self, caller: str) -> None:
        done = self._done[caller] = self._done.get(caller, 0) + 1
        behind = self._behind.pop(caller, None)
        if behind:
            rest = []
            for after, future in behind:
                if after > done:
                    rest.append((after, future))
                elif not future.done():
                    future.set_result(None)
            if rest:
                self._behind[caller] = rest

    async def _catch_up(self, caller: str, after: int) -> None:
        future = asyncio.get_running_loop().create_future()
        self._behind.setdefault(caller, []).append((after, future))
        try:
            await asyncio.wait_for(future, _CATCH_UP)
        except asyncio.TimeoutError:  # a call it sent never came: serve it anyway
            logger.warning("LimitSet(mode='ray'): calls of %s sent before an acquire did not arrive", caller)

    async def _await_death(self, caller: str, ref: Any) -> None:
        import ray

        try:
            await ref
        except ray.exceptions.ObjectLostError:  # OwnerDiedError: the caller's process is gone
            self._reclaim(caller)
        except Exception:  # not a death: keep its units (a leak is safer than a double grant)
            logger.exception("LimitSet(mode='ray'): watching caller %s failed", caller)
        # a normal end: the park was ended by ``close`` (or by ``_reclaim``)

    def _reclaim(self, caller: str) -> None:
        self._gone.add(caller)
        self._watchers.pop(caller, None)
        self._done.pop(caller, None)
        for _, future in self._behind.pop(caller, ()):
            future.cancel()
        for wait in self._waits.pop(caller, {}).values():
            wait.cancel()
        held = self._held.pop(caller, None)
        if held:
            self._set._release(tuple((i, units) for i, units in held.items() if units))
        parked = self._parked.pop(caller, None)
        if parked is not None and not parked.done():
            parked.set_result(None)

    async def state(self, caller: str, after: int) -> dict[str, Any]:
        """Units in use per resource key, the holders and the waiter count (tests, debugging),
        after the calls ``caller`` sent before."""
        if after > self._done.get(caller, 0):
            await self._catch_up(caller, after)
        inner = self._set
        view, ledger = inner._store.view, inner._ledger
        return {
            "in_use": {inner.limits[i].key: view[ledger.offsets[i]] for i in ledger.resources},
            "holders": {c: dict(units) for c, units in self._held.items() if any(units.values())},
            "waiting": int(view[1]),
            "callers": len(self._watchers),
            "pid": os.getpid(),
        }


_ACTOR_CLASS: Any = None


def _actor_class(ray: Any) -> Any:
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        # fire-and-forget: no result object is made
        for name in ("release", "adjust", "withdraw", "watch", "close"):
            ray.method(num_returns=0)(getattr(LimitKeeper, name))
        _ACTOR_CLASS = ray.remote(num_cpus=0, max_concurrency=_KEEPER_CONCURRENCY)(LimitKeeper)
    return _ACTOR_CLASS


class _Caller:
    """This process as a caller of one keeper: its Ray worker id and how many fire-and-forget
    calls it has sent (each acquire carries the count) and its acquires' numbers."""

    __slots__ = ("id", "lock", "numbers", "pid", "sent")

    def __init__(self, caller_id: str) -> None:
        self.id = caller_id
        self.pid = os.getpid()
        self.sent = 0
        self.lock = threading.Lock()
        self.numbers = itertools.count()


_CALLERS: dict[str, _Caller] = {}  # keeper id -> this process as its caller
_CALLERS_LOCK = threading.Lock()


def _close(handle: Any) -> None:
    """The maker's set is gone: let the keeper end once no copy is left (see ``close``)."""
    try:
        import ray

        if ray.is_initialized():
            handle.close.remote()
    except Exception:  # Ray is shutting down: the keeper goes with it
        pass


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
                    weakref.finalize(self, _close, self._handle)
                handle = self._handle
        return handle

    def caller(self) -> _Caller:
        """This process as the keeper's caller; the first time, the keeper is told to watch it."""
        caller = _CALLERS.get(self.keeper_id)
        if caller is not None and caller.pid == os.getpid():
            return caller
        with _CALLERS_LOCK:
            caller = _CALLERS.get(self.keeper_id)
            if caller is None or caller.pid != os.getpid():
                keeper = self.keeper()
                caller = _Caller(import_ray().get_runtime_context().get_worker_id())
                # A call that stays parked: its result is owned by this process, so it fails for
                # the keeper when this process dies. Nested in a list: the keeper gets the ref.
                keeper.watch.remote([keeper.park.remote(caller.id)], caller.id)
                caller.sent = 1
                _CALLERS[self.keeper_id] = caller
        return caller

    def acquire(self, request: tuple, mask: int, timeout: float | None) -> tuple[int, Any]:
        """Sends the request: (its number, the ref of its answer)."""
        caller = self.caller()
        number = next(caller.numbers)
        packed = _dumps((request, mask, timeout, caller.id, caller.sent, number))
        return number, self.keeper().acquire.remote(packed)

    def send(self, method: str, *args: Any) -> None:
        """A fire-and-forget call, counted once it is on its way."""
        caller = self.caller()
        with caller.lock:
            getattr(self.keeper(), method).remote(_dumps((*args, caller.id)))
            caller.sent += 1

    def __reduce__(self) -> tuple:
        return (RayStore, ((), self.keeper_id, self.keeper()))


class RayLimitSet(LimitSet):
    """A ``LimitSet(shared=True, mode="ray")`` (what ``LimitSet`` becomes for that mode): requests
    are checked here and granted by the keeper actor. ``granted_at`` is the keeper's
    ``time.monotonic()``."""

    _store: RayStore
    remote = True

    def _call(self, request: tuple, mask: int, timeout: float | None) -> tuple[int, Any]:
        return self._store.acquire(request, mask, timeout)

    def _get(self, sent: tuple[int, Any], request: tuple, mask: int) -> Any:
        ray = import_ray()
        try:
            return ray.get(sent[1])
        except ray.exceptions.RayError:
            raise
        except BaseException:  # interrupted before the answer came: do not keep what it brings
            self._abandon(sent, request, mask)
            raise

    def _abandon(self, sent: tuple[int, Any], request: tuple, mask: int) -> None:
        """Withdraw the request; if it was granted meanwhile, give the units back."""
        number, ref = sent
        self._store.send("withdraw", number)
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

    async def async_acquire(
        self, requested: Mapping[str, int] | None = None, timeout: float | None = None
    ) -> Acquisition:
        request, mask = self._compile(requested)
        if timeout is not None:
            _check_timeout(timeout)
        sent = self._call(request, mask, timeout)
        answer = asyncio.wrap_future(sent[1].future())
        try:
            granted_at = await asyncio.shield(answer)  # a cancelled caller leaves the answer to _abandon
        except asyncio.CancelledError:
            answer.add_done_callback(_retrieved)
            self._abandon(sent, request, mask)
            raise
        if granted_at is None:
            raise TimeoutError("LimitSet acquire timed out before every requested unit was available")
        return Acquisition(self, request, mask, granted_at)

    def _grant_now(self, request: tuple, mask: int) -> float | None:
        return self._get(self._call(request, mask, _TRY), request, mask)

    def _release(self, request: tuple) -> None:
        self._store.send("release", request)

    def _adjust(self, deltas: list[tuple[int, float]], granted_at: float) -> None:
        self._store.send("adjust", deltas, granted_at)

    def keeper_state(self) -> dict[str, Any]:
        """The keeper's units in use per resource key, holders, waiter count, callers watched and
        process id (a round trip; for tests and debugging)."""
        caller = self._store.caller()
        return import_ray().get(self._store.keeper().state.remote(caller.id, caller.sent))


def _retrieved(future: asyncio.Future) -> None:
    # an answer nobody awaits any more: its error (if any) is seen, so asyncio does not log it
    if not future.cancelled():
        future.exception()


def _ray_store(limit_set: LimitSet, limits: tuple, store: RayStore | None) -> RayStore:
    if store is None:
        import_ray()  # fail here, with the install hint, rather than at first use
        store = RayStore(limits)
    limit_set.__class__ = RayLimitSet
    return store


register_shared_store("ray", _ray_store)
