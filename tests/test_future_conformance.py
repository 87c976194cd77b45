"""Our futures against ``concurrent.futures`` semantics, and the CPython internals we rely on.

Runs on every supported Python (``make test-pythons``). Two parts:

- Pinned internals: ``ConcurrentFuture``/``SyncFuture`` build their own state instead of
  calling ``Future.__init__`` (a condition made only when someone waits), ``force_cancel``
  cancels a running future through the private state, and ``completion`` installs itself as a
  ``cf.wait``-style waiter. These tests fail if CPython changes any of what that relies on:
  the attribute set, the state names, which condition methods a ``Future`` calls, the waiter
  protocol, ``_invoke_callbacks``, where a finished future keeps its outcome.
- Conformance: the same scenarios on a plain ``concurrent.futures.Future`` and on ours, with
  ``cf.wait``, ``as_completed``, callbacks, ``cancel``, ``set_running_or_notify_cancel``,
  ``repr``, ``InvalidStateError``, blocking waits from other threads and ``asyncio.wrap_future``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import concurrent.futures._base as cf_base
import logging
import re
import threading
import time

import pytest

from concurry import ConcurrentFuture, SyncFuture, wait, wrap_future
from concurry.completion import DONE_STATES, completed, outcome
from concurry.futures import _LazyCondition, force_cancel, set_outcome

pytestmark = pytest.mark.timeout(30)

KINDS = {"cf.Future": cf.Future, "ConcurrentFuture": ConcurrentFuture}


@pytest.fixture(params=list(KINDS))
def new(request):
    """A factory of pending futures: the standard library's, then ours."""
    return KINDS[request.param]


def _later(seconds: float, fn, *args) -> threading.Thread:
    def run():
        time.sleep(seconds)
        fn(*args)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# ---------------------------------------------------------------------------------------------
# Pinned internals


def test_our_futures_carry_exactly_the_attributes_of_a_concurrent_future():
    """Our ``__init__`` replaces ``Future.__init__``: a new attribute there would be missing."""
    expected = set(vars(cf.Future()))
    assert set(vars(ConcurrentFuture())) == expected
    assert set(vars(SyncFuture(1))) == expected
    assert set(vars(SyncFuture(exception=KeyError("k")))) == expected


def test_the_state_names_are_the_ones_futures_go_through():
    f = cf.Future()
    assert f._state == cf_base.PENDING
    assert f.set_running_or_notify_cancel() and f._state == cf_base.RUNNING
    f.set_result(1)
    assert f._state == cf_base.FINISHED and (f._result, f._exception) == (1, None)
    g = cf.Future()
    g.cancel()
    assert g._state == cf_base.CANCELLED
    assert not g.set_running_or_notify_cancel() and g._state == cf_base.CANCELLED_AND_NOTIFIED
    h = cf.Future()
    err = KeyError("k")
    h.set_exception(err)
    assert h._state == cf_base.FINISHED and h._exception is err
    assert set(DONE_STATES) == {cf_base.FINISHED, cf_base.CANCELLED, cf_base.CANCELLED_AND_NOTIFIED}
    assert ConcurrentFuture()._state == cf_base.PENDING and SyncFuture(1)._state == cf_base.FINISHED


def test_a_pending_futures_done_callbacks_are_kept_in_done_callbacks():
    """Ray mode looks there to settle a future with callbacks off Ray's own thread."""
    for f in (cf.Future(), ConcurrentFuture()):
        assert f._done_callbacks == []
        f.add_done_callback(print)
        assert f._done_callbacks == [print]


class _Recording:
    """Wraps an object and records the names of the attributes used on it."""

    def __init__(self, target, used: set):
        self._target, self._used = target, used

    def __getattr__(self, name):
        self._used.add(name)
        return getattr(self._target, name)

    def __enter__(self):
        self._used.add("__enter__")
        return self._target.__enter__()

    def __exit__(self, *exc):
        self._used.add("__exit__")
        return self._target.__exit__(*exc)


def _every_future_operation(make) -> None:
    """Drive futures from ``make()`` through every public operation and stdlib helper."""
    f = make()
    assert not f.done() and not f.running() and not f.cancelled()
    with pytest.raises(cf.TimeoutError):
        f.result(timeout=0.01)
    with pytest.raises(cf.TimeoutError):
        f.exception(timeout=0.01)
    repr(f)
    f.add_done_callback(lambda _: None)
    cf.wait([f], timeout=0.01)
    with pytest.raises(cf.TimeoutError):
        list(cf.as_completed([f], timeout=0.01))
    assert f.set_running_or_notify_cancel()
    _later(0.05, f.set_result, 1)
    assert f.result(timeout=5) == 1  # a blocking wait woken from another thread
    repr(f)
    g = make()
    _later(0.05, g.set_exception, KeyError("k"))
    assert isinstance(g.exception(timeout=5), KeyError)
    h = make()
    _later(0.05, h.cancel)
    with pytest.raises(cf.CancelledError):
        h.result(timeout=5)
    assert not h.set_running_or_notify_cancel()
    k = make()
    _later(0.05, k.set_result, 2)
    assert cf.wait([k], timeout=5, return_when=cf.FIRST_COMPLETED).done == {k}
    m = make()
    _later(0.05, m.set_result, 3)
    assert [x.result() for x in cf.as_completed([m], timeout=5)] == [3]

    async def wrapped():
        n = make()
        asyncio.get_running_loop().call_later(0.05, n.set_result, 4)
        return await asyncio.wrap_future(n)

    assert asyncio.run(wrapped()) == 4


def test_a_future_uses_only_the_condition_methods_the_lazy_condition_has():
    """``_LazyCondition`` stands in for ``threading.Condition``; if ``Future`` starts using
    another method of its condition, this names it."""
    used: set = set()

    def make():
        f = cf.Future()
        f._condition = _Recording(threading.Condition(), used)
        return f

    _every_future_operation(make)
    provided = {"acquire", "release", "__enter__", "__exit__", "wait", "notify", "notify_all"}
    assert used <= provided, f"Future now uses {used - provided} of its condition"
    assert {"wait", "notify_all", "__enter__"} <= used  # the test did exercise waiting


def test_our_futures_pass_every_operation_with_the_lazy_condition():
    _every_future_operation(ConcurrentFuture)
    f = ConcurrentFuture()
    assert isinstance(f._condition, _LazyCondition) and f._condition._condition is None
    f.set_result(1)  # finished before anyone waited: no Condition was ever built
    assert f.result() == 1 and f._condition._condition is None


def test_the_waiter_protocol_completion_installs_itself_into():
    """``completion`` appends an object to ``_waiters`` as ``cf.wait`` does; the future calls
    ``add_result``/``add_exception``/``add_cancelled`` on it, and nothing else."""
    used: set = set()
    calls: list = []

    class Waiter:
        def add_result(self, f):
            calls.append(("result", f))

        def add_exception(self, f):
            calls.append(("exception", f))

        def add_cancelled(self, f):
            calls.append(("cancelled", f))

    def watched(make=cf.Future):
        f = make()
        with f._condition:
            f._waiters.append(_Recording(Waiter(), used))
        return f

    a, b, c, d = watched(), watched(), watched(), watched(ConcurrentFuture)
    a.set_result(1)
    b.set_exception(KeyError("k"))
    assert c.cancel() and calls == [("result", a), ("exception", b)]  # cancel alone: not yet
    assert not c.set_running_or_notify_cancel()
    d.set_result(2)
    assert calls == [("result", a), ("exception", b), ("cancelled", c), ("result", d)]
    assert used == {"add_result", "add_exception", "add_cancelled"}


def test_wait_and_as_completed_reach_a_pending_future_through_its_waiters_attribute():
    """``RayFuture`` learns that ``cf.wait``/``as_completed`` watch it from their reading its
    ``_waiters`` (it then asks Ray to complete it): they read it for a pending future before
    they block, and what they append there is what the future reports to."""
    read: list = []

    class Watched(cf.Future):
        @property
        def _waiters(self):
            read.append(self)
            return self.__dict__["waiter_list"]

        @_waiters.setter
        def _waiters(self, value):
            self.__dict__["waiter_list"] = value

    pending = Watched()
    assert cf.wait([pending], timeout=0.01).not_done == {pending}
    assert pending in read, "cf.wait installed its waiter without reading _waiters"
    read.clear()
    with pytest.raises(cf.TimeoutError):
        list(cf.as_completed([pending], timeout=0.01))
    assert pending in read, "as_completed installed its waiter without reading _waiters"
    _later(0.05, pending.set_result, 2)
    assert cf.wait([pending], timeout=5).done == {pending}
    assert [f.result() for f in cf.as_completed([pending], timeout=5)] == [2]


def test_completion_leaves_no_waiter_behind():
    futures = [ConcurrentFuture(), cf.Future()]
    with pytest.raises(TimeoutError):
        list(completed(futures, timeout=0.05))
    assert all(f._waiters == [] for f in futures)
    _later(0.05, futures[0].set_result, 1)
    _later(0.05, futures[1].set_result, 2)
    assert set(completed(futures, timeout=5)) == set(futures)
    assert all(f._waiters == [] for f in futures)


def test_outcome_reads_what_the_public_api_says(new):
    ok, failed, cancelled = new(), new(), new()
    ok.set_result(5)
    err = ValueError("v")
    failed.set_exception(err)
    cancelled.cancel()
    assert outcome(ok) == (True, 5) == (True, ok.result())
    assert outcome(failed) == (False, err) and failed.exception() is err
    ok_c, exc = outcome(cancelled)
    assert not ok_c and isinstance(exc, cf.CancelledError) and cancelled.cancelled()
    assert outcome(SyncFuture(7)) == (True, 7)


# ---- force_cancel: the one state change concurrent.futures has no public API for ----


def _blocked_waiters(f) -> dict:
    """Start a blocking ``result()``, a ``cf.wait`` and an ``as_completed`` on ``f`` in threads."""
    seen: dict = {}

    def blocked_result():
        try:
            f.result(timeout=10)
        except cf.CancelledError:
            seen["result"] = "cancelled"

    def waited():
        seen["wait"] = f in cf.wait([f], timeout=10).done

    def iterated():
        seen["as_completed"] = [x is f for x in cf.as_completed([f], timeout=10)]

    threads = [threading.Thread(target=t, daemon=True) for t in (blocked_result, waited, iterated)]
    for t in threads:
        t.start()
    time.sleep(0.1)  # let all three block
    seen["threads"] = threads
    return seen


@pytest.mark.parametrize("running", [False, True], ids=["pending", "running"])
def test_force_cancel_behaves_like_a_cancel_everyone_can_see(new, running):
    f = new()
    if running:
        assert f.set_running_or_notify_cancel()
    calls = []
    f.add_done_callback(calls.append)
    seen = _blocked_waiters(f)
    assert force_cancel(f)
    for t in seen.pop("threads"):
        t.join(5)
    assert seen == {"result": "cancelled", "wait": True, "as_completed": [True]}
    assert f.cancelled() and f.done() and not f.running() and calls == [f]
    with pytest.raises(cf.CancelledError):
        f.result(timeout=0)
    assert "state=cancelled" in repr(f)
    with pytest.raises(RuntimeError):  # a worker that takes it now skips it (thread backend)
        f.set_running_or_notify_cancel()
    with pytest.raises(cf.InvalidStateError):
        f.set_result(1)
    set_outcome(f, 1, None)  # the late result of a worker that ignored the deadline: dropped
    assert f.cancelled() and calls == [f]
    assert force_cancel(f) and calls == [f]  # idempotent, callbacks not run twice


def test_force_cancel_reaches_asyncio_and_leaves_finished_futures_alone(new):
    async def main():
        f = new()
        f.set_running_or_notify_cancel()
        wrapped = asyncio.wrap_future(f)
        asyncio.get_running_loop().call_later(0.05, force_cancel, f)
        with pytest.raises(asyncio.CancelledError):
            await wrapped

    asyncio.run(main())
    done = new()
    done.set_result(3)
    assert not force_cancel(done) and done.result() == 3
    assert not force_cancel(SyncFuture(4))


# ---------------------------------------------------------------------------------------------
# Conformance with concurrent.futures semantics


def test_states_and_transitions(new):
    f = new()
    assert (f.done(), f.running(), f.cancelled()) == (False, False, False)
    assert f.set_running_or_notify_cancel()
    assert f.running() and not f.cancel()  # a running future cannot be cancelled
    with pytest.raises(RuntimeError):
        f.set_running_or_notify_cancel()
    f.set_result(1)
    assert f.done() and not f.running() and not f.cancel() and f.result() == 1
    g = new()
    assert g.cancel() and g.cancel() and g.cancelled() and g.done()
    assert not g.set_running_or_notify_cancel()
    with pytest.raises(cf.CancelledError):
        g.result()
    with pytest.raises(cf.CancelledError):
        g.exception()


def test_invalid_state_errors(new):
    f = new()
    f.set_result(1)
    with pytest.raises(cf.InvalidStateError):
        f.set_result(2)
    with pytest.raises(cf.InvalidStateError):
        f.set_exception(KeyError("k"))
    g = new()
    g.cancel()
    with pytest.raises(cf.InvalidStateError):
        g.set_result(1)
    s = SyncFuture(1)
    with pytest.raises(cf.InvalidStateError):
        s.set_result(2)
    assert s.result() == 1


def test_results_exceptions_and_wait_timeouts(new):
    f = new()
    with pytest.raises(cf.TimeoutError):
        f.result(timeout=0.01)
    f.set_exception(KeyError("k"))
    with pytest.raises(KeyError):
        f.result()
    assert isinstance(f.exception(timeout=0), KeyError)


def test_a_wait_timeout_is_the_builtin_timeout_error_on_every_version():
    """Python 3.10's ``concurrent.futures.TimeoutError`` is its own class; ours is both."""
    f = ConcurrentFuture()
    for wait_on in (f.result, f.exception):
        with pytest.raises(TimeoutError) as info:
            wait_on(timeout=0.01)
        assert isinstance(info.value, cf.TimeoutError)

    class Late(cf.TimeoutError):  # the call's own exception is re-raised as it is
        pass

    g = ConcurrentFuture()
    err = Late("raised by the call")
    g.set_exception(err)
    with pytest.raises(Late) as info:
        g.result(timeout=0.01)
    assert info.value is err


def test_done_callbacks(new, caplog):
    f = new()
    calls = []
    f.add_done_callback(calls.append)
    f.add_done_callback(lambda _: 1 / 0)  # logged, like concurrent.futures; never raised
    f.add_done_callback(lambda x: calls.append(("second", x)))
    assert calls == []
    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        f.set_result(1)
    assert calls == [f, ("second", f)]
    assert any("exception calling callback" in r.getMessage() for r in caplog.records)
    f.add_done_callback(lambda x: calls.append(("late", x)))  # already done: called at once
    assert calls[-1] == ("late", f)
    g = new()
    g.add_done_callback(calls.append)
    g.cancel()
    assert calls[-1] is g


def test_cf_wait_with_every_return_when(new):
    a, b, c = new(), new(), new()
    done, not_done = cf.wait([a, b, c], timeout=0.01)
    assert (done, not_done) == (set(), {a, b, c})
    _later(0.05, b.set_result, 2)
    done, not_done = cf.wait([a, b, c], timeout=5, return_when=cf.FIRST_COMPLETED)
    assert done == {b} and not_done == {a, c}
    _later(0.05, c.set_exception, KeyError("k"))
    done, _ = cf.wait([a, c], timeout=5, return_when=cf.FIRST_EXCEPTION)
    assert done == {c}

    def cancel_as_an_executor_does():  # cf.wait counts a cancel once the executor saw it
        a.cancel()
        a.set_running_or_notify_cancel()

    _later(0.05, cancel_as_an_executor_does)
    done, not_done = cf.wait([a, b, c], timeout=5)  # ALL_COMPLETED
    assert done == {a, b, c} and not not_done
    mixed = [new(), cf.Future(), SyncFuture(1)]
    for f in mixed[:2]:
        _later(0.05, f.set_result, 0)
    assert cf.wait(mixed, timeout=5).done == set(mixed)


def test_as_completed_yields_in_completion_order(new):
    fs = [new() for _ in range(3)]

    def finish_in_order() -> None:  # one thread, so the completion order is certain
        for i in (2, 1, 0):
            time.sleep(0.05)
            fs[i].set_result(i)

    _later(0, finish_in_order)
    assert [f.result() for f in cf.as_completed(fs, timeout=5)] == [2, 1, 0]
    pending = new()
    with pytest.raises(cf.TimeoutError):
        list(cf.as_completed([pending], timeout=0.05))
    done = new()
    done.set_result(1)
    assert list(cf.as_completed([done, done])) == [done]  # duplicates once


def test_repr_is_the_standard_librarys(new):
    name = new.__name__
    f = new()
    assert re.fullmatch(rf"<{name} at 0x[0-9a-f]+ state=pending>", repr(f))
    f.set_running_or_notify_cancel()
    assert re.fullmatch(rf"<{name} at 0x[0-9a-f]+ state=running>", repr(f))
    f.set_result(1)
    assert re.fullmatch(rf"<{name} at 0x[0-9a-f]+ state=finished returned int>", repr(f))
    g = new()
    g.set_exception(KeyError("k"))
    assert repr(g).endswith("state=finished raised KeyError>")
    h = new()
    h.cancel()
    assert repr(h).endswith("state=cancelled>")
    assert re.fullmatch(r"<SyncFuture at 0x[0-9a-f]+ state=finished returned str>", repr(SyncFuture("x")))
    assert repr(SyncFuture(exception=KeyError("k"))).endswith("state=finished raised KeyError>")


def test_asyncio_wrap_future_both_ways(new):
    async def main():
        loop = asyncio.get_running_loop()
        f = new()
        loop.call_later(0.02, f.set_result, 1)
        assert await asyncio.wrap_future(f) == 1
        g = new()
        loop.call_later(0.02, g.set_exception, KeyError("k"))
        with pytest.raises(KeyError):
            await asyncio.wrap_future(g)
        h = new()
        loop.call_later(0.02, h.cancel)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wrap_future(h)
        k = new()
        wrapped = asyncio.wrap_future(k)
        wrapped.cancel()  # cancelling the asyncio side cancels the concurrent future
        with pytest.raises(asyncio.CancelledError):
            await wrapped
        await asyncio.sleep(0.01)  # the cancel travels through a loop callback
        assert k.cancelled()
        s = SyncFuture(5)
        assert await asyncio.wrap_future(s) == 5

    asyncio.run(main())


def test_our_futures_are_awaitable_directly():
    async def main():
        f = ConcurrentFuture()
        asyncio.get_running_loop().call_later(0.02, f.set_result, 1)
        assert await f == 1
        assert await SyncFuture(2) == 2
        with pytest.raises(KeyError):
            await SyncFuture(exception=KeyError("k"))

    asyncio.run(main())


def test_sync_futures_are_born_finished_and_interoperate():
    ok, failed = SyncFuture(1), SyncFuture(exception=KeyError("k"))
    assert ok.done() and not ok.running() and not ok.cancelled() and not ok.cancel()
    assert ok.result(timeout=0) == 1 and ok.exception() is None
    assert isinstance(failed.exception(), KeyError)
    with pytest.raises(KeyError):
        failed.result()
    calls = []
    ok.add_done_callback(calls.append)
    assert calls == [ok]
    many = [SyncFuture(i) for i in range(50)]  # they share one re-entrant condition
    pending = ConcurrentFuture()
    done, not_done = cf.wait([*many, pending], timeout=0.01)
    assert done == set(many) and not_done == {pending}
    done, _ = cf.wait([*many, pending], return_when=cf.FIRST_COMPLETED)
    assert done == set(many)
    assert sorted(f.result() for f in cf.as_completed(many)) == list(range(50))
    with pytest.raises(RuntimeError):  # finished: not startable
        ok.set_running_or_notify_cancel()


def test_foreign_futures_keep_their_semantics_when_wrapped():
    """``wrap_future`` of a plain ``cf.Future``: the outcome and cancellation go through."""
    src = cf.Future()
    w = wrap_future(src)
    _later(0.05, src.set_result, 3)
    assert w.result(timeout=5) == 3 and cf.wait([w], timeout=5).done == {w}
    src2 = cf.Future()
    w2 = wrap_future(src2)
    assert w2.cancel() and src2.cancelled() and w2.cancelled()
    running = cf.Future()
    running.set_running_or_notify_cancel()
    assert not wrap_future(running).cancel()


def test_asyncio_futures_of_another_loop_from_threads_and_loops():
    """An ``AsyncioFuture`` mirrors its loop's future with public callbacks only: blocking
    waits, ``await`` from another loop, and cancelling that ``await`` cancels the source."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:

        async def make():
            return loop.create_future()

        source = asyncio.run_coroutine_threadsafe(make(), loop).result(5)
        f = wrap_future(source)
        loop.call_soon_threadsafe(loop.call_later, 0.05, source.set_result, 7)
        assert f.result(timeout=5) == 7
        assert wait([f], timeout=5) == ({f}, set())

        other = asyncio.run_coroutine_threadsafe(make(), loop).result(5)
        g = wrap_future(other)

        async def await_then_cancel():
            task = asyncio.ensure_future(g)  # awaits through the mirror
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(await_then_cancel())
        deadline = time.monotonic() + 5
        while not other.cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert other.cancelled() and g.cancelled()

        failing = asyncio.run_coroutine_threadsafe(make(), loop).result(5)
        h = wrap_future(failing)
        loop.call_soon_threadsafe(failing.set_exception, KeyError("k"))
        assert isinstance(h.exception(timeout=5), KeyError)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
