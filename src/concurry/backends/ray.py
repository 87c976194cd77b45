"""``ray`` mode: one Ray actor per worker, each call one actor task.

Starting: the class and its arguments travel as for a process worker (``class_transport``: by
reference when importable, by value from ``__main__``) to a ``ray_actor.RayActor``, which builds
the ``Runtime`` there; the actor options (``num_cpus``, ``resources``, ``runtime_env``, ...) are
the worker's Ray options, passed to Ray untouched (Ray's defaults otherwise: an actor needs one
CPU to be placed and none while it runs, so a pool of many fits on a small machine). Ray is
started (or joined, ``RAY_ADDRESS``) as on Ray's own first use, unless the user called
``ray.init``.

Calling: ``actor.<method>.options(name="<method>#<call number>").remote(*args, **kwargs)`` (the
actor class has one task per public method, ``ray_actor.actor_class``). A pool member's futures
are completed by Ray's callback (``ObjectRef.future()``), which also keeps ``unfinished`` and
tells the pool when the worker is idle. A single worker's are settled by whoever looks at them
(``ray_future``): the callback costs a call up to a fifth of its time again, so it is registered
only for a future something watches; the calls nobody looks at are settled in batches once Ray
has finished them (``_forget_finished``).

A ``RayFuture`` among the arguments travels as its ``ObjectRef``: at top level Ray resolves it
before the call starts; nested in a container it travels as a future over the same ref, which
the actor's runtime unwraps (``ray.get`` there). The caller never waits for it. A call whose
arguments hold pending *local* futures waits here, with every later call (actor order), until
they resolve. A pool's own future given to ``submit`` remembers its ref, so it can be handed
over as well.

Dying: a call failing with ``RayActorError`` means the actor died: every unfinished call fails
with ``WorkerCrashedError`` (Ray fails them all), later calls raise it, a pool is told.

Cancelling: a call sent to the actor is taken back by the actor itself if it has not started
(``take_back``; ``ray_actor``'s control group), so ``cancel()`` is true only for a call that
never runs; ``ray.cancel`` is not used (see ``RayFuture.cancel``).

Stopping: stop first signals the actor (its control group, so the signal gets in while a call
runs): a back-off between retries ends at once, the call fails with its last error, later calls
get no more retries. Calls finish (``cancel_futures``: those not started are taken back first;
at the deadline what is left is cancelled), the instance's own ``stop()`` runs, then the actor
is killed (``ray.kill``).
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import functools
import itertools
import sys
import threading
import time
import weakref
from concurrent.futures._base import PENDING, RUNNING
from typing import Any

import ray
from ray.exceptions import RayActorError

from ..errors import WorkerCrashedError
from ..futures import BaseFuture, ConcurrentFuture, SyncFuture, force_cancel, remaining, set_outcome
from ..runtime import CallOptions, call_has_futures, replace_futures
from ..thread_exit import join
from .base import Backend
from .ray_actor import CONCURRENCY_GROUPS, RESERVED, actor_class
from .ray_future import CALLBACK_THREAD, RayFuture, ensure_ray, ray_error, settle, settle_all

# a single worker looks for finished calls nobody watches once it holds this many unfinished
_FORGET_AT = 64
_TAKE_BACK_TIMEOUT = 30.0  # seconds for the actor's answer to a cancel (its control thread is free)
_actor_classes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # worker class -> Ray actor class
# Set while one of our completion callbacks runs (on Ray's callback thread): user callbacks run
# there, and a ``stop()`` they call must not wait for calls that thread has to complete.
_in_callback = threading.local()


def _remote_class(cls: type) -> Any:
    remote = _actor_classes.get(cls)
    if remote is None:
        remote = _actor_classes[cls] = ray.remote(concurrency_groups=CONCURRENCY_GROUPS)(actor_class(cls))
    return remote


class RayBackend(Backend):
    """A Ray actor that owns the instance and runs calls in submission order."""

    _actor: Any = None
    _crashed = False

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    # ---- starting ----

    def launch(self) -> None:
        """Create the actor; returns without waiting for the instance's ``__init__``."""
        payload = self._payload()
        ensure_ray()
        self._lock = threading.RLock()  # re-entrant: a held call's release may run callbacks
        self._live: dict[int, tuple[cf.Future, Any]] = {}  # unfinished calls, in order: (future, ref)
        self._held: collections.deque = collections.deque()  # calls waiting for local futures
        # with ``claims`` (a pool balancing by ``active``): one call at the actor at a time, the
        # others wait here, where ``withdraw`` can take them back for an idle worker
        self._waiting: collections.deque = collections.deque()
        self._keys = itertools.count()
        self._forget_at = _FORGET_AT
        self._stopper: threading.Thread | None = None
        self._stop_begun = threading.Event()  # set once the first stop() has started the stopper
        self._convert = self._error_of
        options = dict(self.options.ray_options)
        if "name" in options and self.options.is_pool:  # one name per actor: "name-0", "name-1r1", ...
            options["name"] = f"{options['name']}-{self.name.split('.', 1)[1]}"
        self._actor = _remote_class(self.cls).options(**options).remote(payload, sys.path)
        self._methods: dict[str, tuple[Any, tuple]] = {}  # name -> (actor method, leading arguments)
        self._ready_ref = self._actor._concurry_ready.remote()

    def _payload(self) -> bytes:
        from ..class_transport import dumps_worker

        args, kwargs = self.args, self.kwargs
        if self.options.unwrap_futures and call_has_futures(args, kwargs):
            args, kwargs = replace_futures((args, kwargs), lambda f: f.result())
        try:
            return dumps_worker(self.cls, (args, kwargs, CallOptions.of(self.options)))
        except Exception as exc:
            raise TypeError(
                f"cannot start ray worker {self.name}: the class {self.cls.__qualname__} or its "
                f"arguments cannot be pickled to send them to the actor: {exc}"
            ) from exc

    def wait_ready(self) -> None:
        """Block until the instance exists in the actor; raise its ``__init__`` error if any."""
        try:
            self.pid = ray.get(self._ready_ref)
        except Exception as exc:
            self._stopped = True
            self._kill()
            error = ray_error(exc, f"ray worker {self.name} (while starting)")
            raise error from None
        self.args = self.kwargs = None  # the actor owns them now

    # ---- calling ----

    @property
    def crashed(self) -> bool:
        return self._crashed

    @property
    def unfinished(self) -> int:
        if self.listener is None and self._live:  # (a pool's calls are each watched)
            self._forget_finished()
        return len(self._live) + len(self._held) + len(self._waiting)

    def submit(
        self, name: str, args: tuple, kwargs: dict, future: ConcurrentFuture | None = None
    ) -> BaseFuture:
        if self._stopped or self._crashed:
            raise self._refusal()
        if self._held or (
            self.options.unwrap_futures and (args or kwargs) and call_has_futures(args, kwargs)
        ):
            return self._submit_with_futures(name, args, kwargs, future)
        if self.claims:
            return self._dispatch(future, name, args, kwargs)
        return self._send(future, name, args, kwargs)

    def _dispatch(self, future: ConcurrentFuture | None, name: str, args: tuple, kwargs: dict) -> BaseFuture:
        """With ``claims``: send the call if the actor has none, else let it wait here."""
        with self._lock:
            if self._live or self._waiting:
                if future is None:
                    future = RayFuture(None, self._convert, name)  # bound to its ref once sent
                self._waiting.append((future, name, args, kwargs))
                return future
            return self._send(future, name, args, kwargs)

    def _send_waiting(self) -> None:
        """With ``claims``: the actor's call is over, send the next waiting one."""
        with self._lock:
            while self._waiting and not self._live and not self._crashed:
                future, name, args, kwargs = self._waiting.popleft()
                if not future.done():  # (cancelled while it waited)
                    self._send(future, name, args, kwargs)

    def withdraw(self) -> list[tuple[ConcurrentFuture, str, tuple, dict]]:
        """With ``claims``: the calls waiting for the actor (none has started; futures untouched)."""
        with self._lock:
            items = list(self._waiting)
            self._waiting.clear()
        return items

    def _send(self, future: ConcurrentFuture | None, name: str, args: tuple, kwargs: dict) -> BaseFuture:
        """Hand one call to Ray and watch its outcome."""
        if future is not None and type(future) is not RayFuture and not future.set_running_or_notify_cancel():
            return future  # a pool's future, cancelled while it waited
        try:
            method, lead = self._methods.get(name) or self._method(name)
            key = next(self._keys)
            # the call number travels as the task's name (``ray_actor``): an argument more would
            # cost a zero-argument call half again its time in Ray; the name costs nothing
            ref = method.options(name=f"{name}#{key}").remote(*lead, *args, **kwargs)
        except Exception as exc:  # an argument Ray cannot serialize: this call fails, nothing else
            error = TypeError(
                f"{self._where(name, args)}: an argument cannot be sent to ray worker {self.name}: {exc}"
            )
            if future is None:
                return SyncFuture(None, error)
            set_outcome(future, None, error)
            return future
        # A pool hears of each call's end (Ray's callback); a single worker's futures are
        # watched only if someone watches them (``ray_future``), else settled when looked at.
        watch = self.listener is not None
        if future is None:
            future = RayFuture(ref, self._convert, name, self, key)
            self._live[key] = (future, ref)
            if watch:
                future._watch()
            elif len(self._live) >= self._forget_at:
                self._forget_finished()
        elif type(future) is RayFuture:  # made while it waited (here, or at another worker)
            self._live[key] = (future, ref)
            future._bind(ref, self._convert, (self, key), watch)
        else:  # a pool's own future
            future._ray_ref = ref  # type: ignore[attr-defined]  # so it can be handed over too
            self._live[key] = (future, ref)
            ref.future().add_done_callback(functools.partial(self.finished, key, future, name))
        return future

    def _method(self, name: str) -> tuple[Any, tuple]:
        """The actor's task for ``name``: its own, or the generic one (given the name first)."""
        method = None if name in RESERVED else getattr(self._actor, name, None)
        found = (self._actor._concurry_call, (name,)) if method is None else (method, ())
        self._methods[name] = found
        return found

    def take_back(self, keys: list[int]) -> set[int]:
        """Of the calls ``keys`` (sent to the actor), those it had not started and now never
        will (``ray.cancel`` is not used: see ``RayFuture.cancel``). A dead actor runs none."""
        try:
            return set(ray.get(self._actor._concurry_cancel.remote(keys), timeout=_TAKE_BACK_TIMEOUT))
        except RayActorError:
            return set(keys)
        except Exception:  # no answer in time (or Ray is gone): they may still run
            return set()

    def forget(self, key: int) -> None:
        """Call ``key``'s future is settled (or cancelled): it is no longer this worker's to finish."""
        self._live.pop(key, None)

    def _forget_finished(self) -> None:
        """Settle and forget the calls Ray has finished that nobody watches (one ``ray.wait``,
        one ``ray.get``), so fire-and-forget calls do not pile up here; then look again only
        after the unfinished ones have doubled. (A watched one is settled by its callback.)"""
        if not ray.is_initialized():  # Ray was shut down (ray.wait would start a new one)
            return
        live = list(self._live.items())
        refs = [ref for _, (_, ref) in live]
        try:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        except Exception:  # Ray is gone: stop() settles them
            return
        done = set(ready)
        unwatched = []
        for key, (future, ref) in live:
            if ref in done:
                self._live.pop(key, None)
                if type(future) is RayFuture and not future._watched and future._state in (PENDING, RUNNING):
                    unwatched.append(future)
        settle_all(unwatched)
        self._forget_at = max(_FORGET_AT, 2 * len(self._live))

    def finished(self, key: int, future: cf.Future, name: str, source: cf.Future) -> None:
        """Ray's callback on a watched call: it is over (any thread Ray picks)."""
        self._live.pop(key, None)
        _in_callback.active = True
        try:
            settle(future, source, self._convert, name)
            if self._waiting:
                self._send_waiting()
        finally:
            _in_callback.active = False
        if not self._live and not self._held and not self._waiting:
            self._notify_idle()

    def _error_of(self, exc: BaseException, _: str = "", method: str = "the method") -> BaseException:
        if isinstance(exc, RayActorError):
            self._died()
        where = method if method == "the method" else f"{self.cls.__qualname__}.{method}"
        return ray_error(exc, f"ray worker {self.name}", where)

    def _died(self) -> None:
        with self._lock:
            if self._crashed or self._stopped:  # killed by stop(): not a crash
                return
            self._crashed = True
            held = [item[0] for item in (*self._held, *self._waiting)]
            self._held.clear()
            self._waiting.clear()
        for future in held:  # calls that waited here fail like the sent ones
            set_outcome(future, None, self._refusal())
        self._notify_died()

    def _refusal(self) -> RuntimeError:
        if self._crashed:
            return WorkerCrashedError(
                f"ray worker {self.name} died (its actor is gone); create a new one with .init()"
            )
        return self.stopped_error()

    def _where(self, name: str, args: tuple) -> str:
        from ..remote_traceback import call_name

        return call_name(self.cls, name, args)

    # ---- calls with futures among their arguments ----

    def _submit_with_futures(
        self, name: str, args: tuple, kwargs: dict, future: ConcurrentFuture | None
    ) -> BaseFuture:
        with self._lock:
            if not self._held:
                try:
                    prepared = _prepare(args, kwargs)
                except BaseException as exc:  # a local argument future failed: so does this call
                    failed = ConcurrentFuture() if future is None else future
                    set_outcome(failed, None, exc)
                    return failed
                if prepared is not None:
                    return (self._dispatch if self.claims else self._send)(future, name, *prepared)
            if future is None:
                future = RayFuture(None, self._convert, name)  # bound to its ref once sent
            self._held.append((future, name, args, kwargs))
            if len(self._held) == 1:
                self._release_held()
        return future

    def _release_held(self, _: Any = None) -> None:
        """Send the held calls, in order, as far as their argument futures allow."""
        with self._lock:
            held = self._held
            while held:
                future, name, args, kwargs = held[0]
                if future.done():  # cancelled while it waited
                    held.popleft()
                    continue
                try:
                    prepared = _prepare(args, kwargs)
                except BaseException as exc:
                    held.popleft()
                    set_outcome(future, None, exc)
                    continue
                if prepared is None:  # wait for the first pending one, then look again
                    _first_pending(args, kwargs).add_done_callback(self._release_held)
                    return
                (self._dispatch if self.claims else self._send)(future, name, *prepared)
                held.popleft()  # only now: a call submitted meanwhile waits behind this one
        if not self._live and not self._held:
            self._notify_idle()

    # ---- stopping ----

    def runs_on(self, thread: threading.Thread) -> bool:
        if thread is not threading.current_thread():
            return False
        return getattr(_in_callback, "active", False) or thread.name == CALLBACK_THREAD

    def stop(self, timeout: float | None = None, cancel_futures: bool = False, wait: bool = True) -> None:
        if self._actor is None:  # never launched
            self._stopped = True
            return
        if self._begin_stop():
            try:
                self._start_stopping(timeout, cancel_futures)
            finally:
                self._stop_begun.set()
        else:  # another thread's stop() is starting the stopper: wait for it, then as that one
            self._stop_begun.wait(timeout)
        stopper = self._stopper
        waits = wait and stopper is not None and not self.runs_on(threading.current_thread())
        if waits and not join(stopper, timeout):
            self._abort()  # this call's deadline passed: cancel what is left, kill the actor

    def _start_stopping(self, timeout: float | None, cancel_futures: bool) -> None:
        self._signal_stop()
        if cancel_futures:
            self._cancel_queued()
        if sys.is_finalizing():  # a thread started now would never run (3.10/3.11 hang in start)
            self._abort()
            return
        stopper = threading.Thread(
            target=self._shutdown, args=(timeout,), name=f"concurry-ray-stop-{self.name}", daemon=True
        )
        try:
            stopper.start()
        except RuntimeError:  # interpreter shutting down: no new threads
            self._abort()
            return
        self._stopper = stopper  # (only once started: a concurrent stop() joins it)

    def _signal_stop(self) -> None:
        """Tell the actor at once (not waiting for it): a back-off in progress ends now."""
        if self._crashed or sys.is_finalizing():
            return
        try:
            self._actor._concurry_stop.remote()
        except Exception:  # the actor or Ray is gone: nothing waits to be cut short
            pass

    def _cancel_queued(self) -> None:
        """Cancel every call not started: the held ones, and those the actor takes back."""
        with self._lock:
            held = [item[0] for item in (*self._held, *self._waiting)]
            self._held.clear()
            self._waiting.clear()
            live = dict(self._live)
        for future in held:
            force_cancel(future)
        if live:
            for key in self.take_back(list(live)):
                force_cancel(live[key][0])

    def _shutdown(self, timeout: float | None) -> None:
        """The stopper thread: drain until the deadline, run the instance's ``stop()``, kill."""
        deadline = None if timeout is None else time.monotonic() + timeout
        held = [item[0] for item in (*list(self._held), *list(self._waiting))]
        if held:  # (sent as their turn comes)
            cf.wait(held, timeout=remaining(deadline))
        refs = [ref for _, ref in self._live.values()]  # (taken-back calls end at once, not run)
        drained = not self._held and not self._waiting
        if refs and drained:
            _, pending = ray.wait(refs, num_returns=len(refs), timeout=remaining(deadline), fetch_local=False)
            drained = not pending
        if drained and not self._crashed:  # the instance's own stop() runs after every call
            try:
                ray.get(self._actor._concurry_close.remote(), timeout=remaining(deadline))
            except Exception:  # the hook's own errors were logged in the actor
                pass
        self._abort()

    def _abort(self) -> None:
        """Settle what has finished, cancel what has not, kill the actor. Idempotent."""
        with self._lock:
            held = [item[0] for item in (*self._held, *self._waiting)]
            self._held.clear()
            self._waiting.clear()
            live = list(self._live.values())  # (left in place: a concurrent abort sees them too)
        for future in held:
            force_cancel(future)
        if live:
            try:
                ready, _ = ray.wait(
                    [ref for _, ref in live], num_returns=len(live), timeout=0, fetch_local=False
                )
            except Exception:
                ready = []
            finished = set(ready)
            ours = []  # finished, their callback not run yet (or nobody watches them)
            for future, ref in live:
                if ref not in finished:
                    force_cancel(future)
                elif future._state in (PENDING, RUNNING):
                    if type(future) is RayFuture:
                        ours.append(future)
                    else:
                        _settle_now(future, ref, self._convert)
            settle_all(ours)
        self._kill()

    def _kill(self) -> None:
        if self._actor is None or sys.is_finalizing():
            return
        try:
            ray.kill(self._actor, no_restart=True)
        except Exception:  # already gone, or Ray is shut down
            pass


def _settle_now(future: cf.Future, ref: Any, convert: Any) -> None:
    try:
        value = ray.get(ref, timeout=0)
    except Exception as exc:
        set_outcome(future, None, convert(exc, "", "the method"))
    else:
        set_outcome(future, value, None)


class _Pending(Exception):
    """An argument future has not finished and has no ref to hand over."""


def _ref_of(future: Any) -> Any:
    return future._ref if type(future) is RayFuture else getattr(future, "_ray_ref", None)


def _prepare(args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """The arguments as they go to Ray: Ray futures as their refs (top level) or as futures over
    them (nested), finished local futures as their values; None while a local one is pending.
    A failed local future raises its exception."""

    def resolve(future: Any) -> Any:
        ref = _ref_of(future)
        if ref is not None:
            return future if type(future) is RayFuture else RayFuture(ref)
        if not future.done():
            raise _Pending
        return future.result()

    try:
        args, kwargs = replace_futures((args, kwargs), resolve)
    except _Pending:
        return None
    # top level: Ray resolves ObjectRef arguments itself before the call starts
    args = tuple(a._ref if type(a) is RayFuture else a for a in args)
    if kwargs:
        kwargs = {k: v._ref if type(v) is RayFuture else v for k, v in kwargs.items()}
    return args, kwargs


def _first_pending(args: tuple, kwargs: dict) -> Any:
    from ..runtime import collect_futures

    for future in collect_futures((args, kwargs), []):
        if _ref_of(future) is None and not future.done():
            return future
    return SyncFuture(None)  # finished meanwhile: look again at once
