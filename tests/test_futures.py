"""Futures (SPEC §6): the BaseFuture API, interop with concurrent.futures and asyncio, wrap_future."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import re
import threading

import pytest

from concurry import AsyncioFuture, BaseFuture, ConcurrentFuture, SyncFuture, worker, wrap_future


class Slow:
    def __init__(self, gate: threading.Event | None = None):
        self.gate = gate

    def value(self, x):
        return x

    def wait_gate(self) -> str:
        self.gate.wait(10)
        return "opened"

    def fail(self):
        raise IndexError("out of range on purpose")


# ---- helpers building each kind of future ----

def _pending_cf() -> cf.Future:
    return cf.Future()


def _done_cf(value) -> cf.Future:
    f = cf.Future()
    f.set_result(value)
    return f


def _failed_cf(exc) -> cf.Future:
    f = cf.Future()
    f.set_exception(exc)
    return f


class LoopThread:
    """An event loop running on a background thread, for AsyncioFuture tests."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def new_future(self) -> asyncio.Future:
        return asyncio.run_coroutine_threadsafe(self._make(), self.loop).result(5)

    async def _make(self) -> asyncio.Future:
        return self.loop.create_future()

    def call(self, fn, *args):
        self.loop.call_soon_threadsafe(fn, *args)

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loop_thread():
    lt = LoopThread()
    yield lt
    lt.close()


# ---- futures returned by workers ----

def test_every_call_returns_a_base_future(mode):
    w = worker(Slow).options(mode=mode).init()
    try:
        f = w.value(1)
        assert isinstance(f, BaseFuture)
        assert f.result(timeout=10) == 1
        assert f.done() and not f.cancelled() and not f.running()
        assert f.exception(timeout=10) is None
        failed = w.fail()
        assert isinstance(failed.exception(timeout=10), IndexError)
        with pytest.raises(IndexError, match="out of range on purpose"):
            failed.result()
    finally:
        w.stop()


def test_sync_mode_futures_are_already_resolved():
    w = worker(Slow).options(mode="sync").init()
    try:
        f = w.value(3)
        assert isinstance(f, SyncFuture)
        assert f.done()
        assert not f.cancel()  # a finished future cannot be cancelled
        assert not f.cancelled()
        seen = []
        f.add_done_callback(seen.append)  # called at once, with the future
        assert seen == [f]
    finally:
        w.stop()


@pytest.mark.parametrize("m", ["thread", "asyncio"])
def test_pending_future_running_timeout_cancel_and_callbacks(m):
    gate = threading.Event()
    w = worker(Slow).options(mode=m).init(gate)
    try:
        blocker = w.wait_gate()
        queued = w.value("queued")
        other = w.value("other")
        assert isinstance(blocker, ConcurrentFuture)
        seen: list = []
        blocker.add_done_callback(seen.append)
        assert _wait(blocker.running)
        assert not blocker.done()
        with pytest.raises(TimeoutError):
            blocker.result(timeout=0.05)
        with pytest.raises(TimeoutError):
            blocker.exception(timeout=0.05)
        assert not blocker.cancel()  # running: cannot be cancelled
        assert queued.cancel()  # pending: can
        assert queued.cancelled() and queued.done()
        with pytest.raises(cf.CancelledError):
            queued.result()
        with pytest.raises(cf.CancelledError):
            queued.exception()
        gate.set()
        assert blocker.result(timeout=10) == "opened"
        assert other.result(timeout=10) == "other"  # the cancelled call was skipped, not the rest
        assert _wait(lambda: seen == [blocker])
    finally:
        w.stop()


def _wait(predicate, timeout=5.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def test_callback_added_after_completion_runs_at_once(mode):
    w = worker(Slow).options(mode=mode).init()
    try:
        f = w.value(5)
        f.result(timeout=10)
        seen = []
        f.add_done_callback(seen.append)
        assert seen == [f]
    finally:
        w.stop()


def test_callback_called_with_the_future_from_worker(concurrent_mode):
    w = worker(Slow).options(mode=concurrent_mode).init()
    try:
        done = threading.Event()
        seen = []

        def callback(fut):
            seen.append(fut.result())
            done.set()

        w.value(9).add_done_callback(callback)
        assert done.wait(10)
        assert seen == [9]
    finally:
        w.stop()


# ---- interop ----

def test_concurrent_futures_wait_and_as_completed(mode):
    w = worker(Slow).options(mode=mode).init()
    try:
        futures = [w.value(i) for i in range(20)]
        done, not_done = cf.wait(futures, timeout=10)
        assert len(done) == 20 and not not_done
        more = [w.value(i) for i in range(20)]
        assert sorted(f.result() for f in cf.as_completed(more, timeout=10)) == list(range(20))
        failing = [w.value(1), w.fail(), w.value(2)]
        done, _ = cf.wait(failing, timeout=10, return_when=cf.FIRST_EXCEPTION)
        assert any(f.exception() is not None for f in done)
    finally:
        w.stop()


def test_cf_wait_on_many_sync_futures_at_once():
    futures = [wrap_future(i) for i in range(100)]
    done, not_done = cf.wait(futures, timeout=5)
    assert len(done) == 100 and not not_done
    assert sorted(f.result() for f in cf.as_completed(futures, timeout=5)) == list(range(100))


def test_asyncio_wrap_future_and_await(mode):
    w = worker(Slow).options(mode=mode).init()
    try:
        async def main():
            a = await w.value(1)
            b = await asyncio.wrap_future(w.value(2))
            c = await asyncio.wait_for(w.value(3), timeout=10)
            with pytest.raises(IndexError):
                await w.fail()
            return a, b, c

        assert asyncio.run(main()) == (1, 2, 3)
    finally:
        w.stop()


# ---- wrap_future of every kind ----

def test_wrap_plain_values():
    for value in (None, 0, "x", [1, 2], {"a": 1}):
        f = wrap_future(value)
        assert isinstance(f, SyncFuture) and isinstance(f, BaseFuture)
        assert f.done() and f.result() == value and f.exception() is None


def test_wrap_base_future_returns_it_unchanged():
    f = wrap_future(1)
    assert wrap_future(f) is f
    c = wrap_future(_pending_cf())
    assert wrap_future(c) is c


def test_wrap_concurrent_future_done_failed_pending_and_cancelled():
    assert wrap_future(_done_cf(5)).result(timeout=1) == 5
    failed = wrap_future(_failed_cf(KeyError("k")))
    with pytest.raises(KeyError):
        failed.result(timeout=1)
    assert isinstance(failed.exception(timeout=1), KeyError)

    source = _pending_cf()
    wrapped = wrap_future(source)
    assert isinstance(wrapped, ConcurrentFuture)
    assert not wrapped.done()
    with pytest.raises(TimeoutError):
        wrapped.result(timeout=0.01)
    seen = []
    wrapped.add_done_callback(seen.append)
    source.set_result("late")
    assert wrapped.result(timeout=1) == "late"
    assert seen == [wrapped]

    source = _pending_cf()
    wrapped = wrap_future(source)
    assert wrapped.cancel()
    assert source.cancelled() and wrapped.cancelled()
    with pytest.raises(cf.CancelledError):
        wrapped.result(timeout=1)

    source = _pending_cf()
    wrapped = wrap_future(source)
    source.cancel()
    assert wrapped.cancelled()


def test_wrap_running_concurrent_future():
    source = _pending_cf()
    source.set_running_or_notify_cancel()
    wrapped = wrap_future(source)
    assert wrapped.running()
    assert not wrapped.cancel()
    source.set_result(1)
    assert wrapped.result(timeout=1) == 1


def test_wrapped_concurrent_future_with_cf_wait():
    sources = [_pending_cf() for _ in range(3)]
    wrapped = [wrap_future(s) for s in sources]
    for i, s in enumerate(sources):
        s.set_result(i)
    done, _ = cf.wait(wrapped, timeout=5)
    assert len(done) == 3


def test_wrap_asyncio_future_from_another_thread(loop_thread):
    fut = loop_thread.new_future()
    wrapped = wrap_future(fut)
    assert isinstance(wrapped, AsyncioFuture)
    assert not wrapped.done() and wrapped.running() and not wrapped.cancelled()
    with pytest.raises(TimeoutError):
        wrapped.result(timeout=0.05)
    seen = []
    wrapped.add_done_callback(seen.append)
    loop_thread.call(fut.set_result, "from loop")
    assert wrapped.result(timeout=5) == "from loop"
    assert wrapped.exception(timeout=5) is None
    assert wrapped.done() and not wrapped.running()
    assert _wait(lambda: seen == [wrapped])


def test_wrap_asyncio_future_failure_and_cancel(loop_thread):
    fut = loop_thread.new_future()
    wrapped = wrap_future(fut)
    loop_thread.call(fut.set_exception, ValueError("loop failure"))
    with pytest.raises(ValueError, match="loop failure"):
        wrapped.result(timeout=5)
    assert isinstance(wrapped.exception(timeout=5), ValueError)

    fut = loop_thread.new_future()
    wrapped = wrap_future(fut)
    assert wrapped.cancel()
    assert _wait(wrapped.cancelled)
    with pytest.raises(cf.CancelledError):
        wrapped.result(timeout=5)
    assert not wrapped.cancel()  # already done


def test_wrap_asyncio_future_awaited_from_another_loop(loop_thread):
    fut = loop_thread.new_future()
    wrapped = wrap_future(fut)

    async def main():
        loop_thread.call(fut.set_result, 11)
        return await wrapped

    assert asyncio.run(main()) == 11


def test_wrap_asyncio_future_inside_its_own_loop():
    async def main():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        wrapped = wrap_future(fut)
        seen = []
        wrapped.add_done_callback(seen.append)
        loop.call_soon(fut.set_result, 4)
        value = await wrapped
        await asyncio.sleep(0)
        # blocking on it from its own loop would deadlock: refused with a clear error
        pending = wrap_future(loop.create_future())
        with pytest.raises(RuntimeError, match="use 'await'"):
            pending.result()
        pending.cancel()
        return value, seen

    value, seen = asyncio.run(main())
    assert value == 4 and len(seen) == 1


def test_wrap_asyncio_task_result():
    async def compute():
        await asyncio.sleep(0)
        return "task result"

    async def main():
        t = asyncio.get_running_loop().create_task(compute())
        return await wrap_future(t)

    assert asyncio.run(main()) == "task result"


def test_sync_future_failed():
    f = SyncFuture(exception=RuntimeError("sync failure"))
    assert f.done() and not f.running()
    assert isinstance(f.exception(), RuntimeError)
    with pytest.raises(RuntimeError, match="sync failure"):
        f.result()

    async def main():
        with pytest.raises(RuntimeError, match="sync failure"):
            await f
        return await SyncFuture(7)

    assert asyncio.run(main()) == 7


def test_wrap_done_asyncio_future_whose_loop_is_closed():
    async def make(kind):
        f = asyncio.get_running_loop().create_future()
        if kind == "ok":
            f.set_result(3)
        elif kind == "error":
            f.set_exception(LookupError("gone"))
        else:
            f.cancel()
        return f

    done = wrap_future(asyncio.run(make("ok")))  # asyncio.run closed its loop
    assert done.done() and done.result(timeout=1) == 3
    seen = []
    done.add_done_callback(seen.append)  # called at once, not scheduled on the dead loop
    assert seen == [done]

    async def await_it(f):
        return await f

    assert asyncio.run(await_it(done)) == 3
    failed = wrap_future(asyncio.run(make("error")))
    with pytest.raises(LookupError, match="gone"):
        asyncio.run(await_it(failed))
    assert isinstance(failed.exception(timeout=1), LookupError)
    cancelled = wrap_future(asyncio.run(make("cancel")))
    assert cancelled.cancelled()
    with pytest.raises(cf.CancelledError):
        cancelled.result(timeout=1)
    with pytest.raises(cf.CancelledError):
        cancelled.exception(timeout=1)


@pytest.mark.parametrize("m", ["thread", "asyncio"])
def test_many_threads_waiting_on_one_future_all_wake(m):
    gate = threading.Event()
    w = worker(Slow).options(mode=m).init(gate)
    try:
        f = w.wait_gate()
        with cf.ThreadPoolExecutor(12) as pool:
            waiters = [pool.submit(f.result, 10) for _ in range(8)]
            timeouts = [pool.submit(f.exception, 0.01) for _ in range(4)]
            for t in timeouts:
                assert isinstance(t.exception(timeout=10), TimeoutError)
            gate.set()
            assert [x.result(timeout=10) for x in waiters] == ["opened"] * 8
    finally:
        w.stop()


# ---- repr: what concurrent.futures says ----

_REPR = r"<(?P<cls>[A-Z]\w*) at 0x[0-9a-f]+ state=(?P<state>.+)>"


def _state(future) -> str:
    match = re.fullmatch(_REPR, repr(future))
    assert match, f"repr not like concurrent.futures': {future!r}"
    return match["state"]


def test_repr_of_worker_futures_says_what_it_returned_or_raised(mode):
    w = worker(Slow).options(mode=mode).init()
    try:
        ok, failed = w.value(7), w.fail()
        assert ok.result(timeout=30) == 7
        failed.exception(timeout=30)
        assert _state(ok) == "finished returned int"
        assert _state(failed) == "finished raised IndexError"
    finally:
        w.stop()


def test_repr_of_sync_and_wrapped_concurrent_futures():
    assert _state(SyncFuture("x")) == "finished returned str"
    assert _state(SyncFuture(exception=KeyError("k"))) == "finished raised KeyError"
    assert _state(wrap_future(3)) == "finished returned int"
    source = cf.Future()
    wrapped = wrap_future(source)
    assert repr(wrapped).startswith("<ConcurrentFuture at ")  # the public name, not a private one
    assert _state(wrapped) == "pending"
    source.set_result(1.5)
    assert _state(wrapped) == "finished returned float"
    failed = cf.Future()
    failed.set_exception(KeyError("k"))
    assert _state(wrap_future(failed)) == "finished raised KeyError"
    cancelled = cf.Future()
    wrapped = wrap_future(cancelled)
    cancelled.cancel()
    assert _state(wrapped) == "cancelled"


def test_repr_of_asyncio_futures(loop_thread):
    fut = loop_thread.new_future()
    wrapped = wrap_future(fut)
    assert repr(wrapped).startswith("<AsyncioFuture at ")
    assert _state(wrapped) == "running"  # as its running() says
    loop_thread.call(fut.set_result, [1])
    wrapped.result(timeout=5)
    assert _state(wrapped) == "finished returned list"
    fut = loop_thread.new_future()
    wrapped = wrap_future(fut)
    loop_thread.call(fut.set_exception, KeyError("k"))
    wrapped.exception(timeout=5)
    assert _state(wrapped) == "finished raised KeyError"
    fut = loop_thread.new_future()
    wrapped = wrap_future(fut)
    wrapped.cancel()
    assert _wait(wrapped.cancelled)
    assert _state(wrapped) == "cancelled"
