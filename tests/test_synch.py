"""``wait``, ``gather``, ``async_wait``, ``async_gather`` (SPEC §7)."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import importlib.util
import io
import sys
import threading
import time

import pytest

from concurry import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    ConcurrentFuture,
    Executor,
    ReturnWhen,
    SyncFuture,
    TaskWorker,
    async_gather,
    async_wait,
    gather,
    temp_config,
    wait,
    worker,
    wrap_future,
)

HAS_PROCESS = importlib.util.find_spec("concurry.backends.process") is not None
MODES = ["sync", "thread", "asyncio"] + (["process"] if HAS_PROCESS else [])
WAITING_MODES = ["thread"] + (["process"] if HAS_PROCESS else [])


@worker
class Calc:
    def square(self, x: int) -> int:
        return x * x

    def slow(self, x: int, delay: float) -> int:
        time.sleep(delay)
        return x

    def fail(self, message: str) -> int:
        raise ValueError(message)


@pytest.fixture(params=MODES)
def calc(request):
    w = Calc.options(mode=request.param).init()
    yield w
    w.stop()


@pytest.fixture
def threads():
    """Three independent thread workers (so their calls really run concurrently)."""
    ws = [Calc.options(mode="thread").init() for _ in range(3)]
    yield ws
    for w in ws:
        w.stop()


def pending() -> ConcurrentFuture:
    return ConcurrentFuture()


def resolved_later(value, delay: float) -> ConcurrentFuture:
    f = ConcurrentFuture()
    threading.Timer(delay, f.set_result, (value,)).start()
    return f


# --- gather: shapes ---------------------------------------------------------------------------


def test_gather_shapes_in_every_mode(calc):
    assert gather([calc.square(i) for i in range(5)]) == [0, 1, 4, 9, 16]
    assert gather(tuple(calc.square(i) for i in range(3))) == [0, 1, 4]
    assert gather(calc.square(i) for i in range(3)) == [0, 1, 4]
    assert sorted(gather({calc.square(2), calc.square(3)})) == [4, 9]
    assert gather({"a": calc.square(2), "b": calc.square(3)}) == {"a": 4, "b": 9}
    assert gather(calc.square(7)) == [49]
    assert gather(calc.square(1), calc.square(2)) == [1, 4]


def test_gather_plain_values_pass_through():
    f = resolved_later("late", 0.05)
    assert gather([1, "two", f, None]) == [1, "two", "late", None]
    assert gather({"x": 1, "y": SyncFuture(2)}) == {"x": 1, "y": 2}
    assert gather(5) == [5]
    assert gather("text") == ["text"]
    assert gather([]) == []
    assert gather({}) == {}


def test_gather_same_future_twice():
    f = resolved_later(3, 0.05)
    assert gather([f, f, 1]) == [3, 3, 1]


def test_gather_accepts_foreign_futures():
    with cf.ThreadPoolExecutor(2) as ex:
        assert gather([ex.submit(pow, 2, i) for i in range(4)]) == [1, 2, 4, 8]
        assert gather(wrap_future(ex.submit(pow, 3, 2))) == [9]


def test_gather_asyncio_future_of_another_loop():
    loop = asyncio.new_event_loop()
    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    try:
        cfut = asyncio.run_coroutine_threadsafe(asyncio.sleep(0.05, result="slept"), loop)
        task_holder: list = []
        ready = threading.Event()

        def make_task():
            task_holder.append(loop.create_task(asyncio.sleep(0.05, result="task")))
            ready.set()

        loop.call_soon_threadsafe(make_task)
        ready.wait(5)
        assert gather([cfut, task_holder[0]], timeout=10) == ["slept", "task"]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
        loop.close()


def test_gather_rejects_coroutines_with_a_pointer_to_async_gather():
    async def coro():
        return 1

    with pytest.raises(TypeError, match="async_gather"):
        gather([coro()])


# --- gather: order, failures, timeout ---------------------------------------------------------


def test_gather_iter_yields_in_completion_order(threads):
    futures = [threads[0].slow("a", 0.3), threads[1].slow("b", 0.02), threads[2].slow("c", 0.15)]
    assert list(gather(futures, iter=True)) == [(1, "b"), (2, "c"), (0, "a")]


def test_gather_iter_over_a_dict_yields_keys(threads):
    futures = {"slow": threads[0].slow(1, 0.2), "fast": threads[1].slow(2, 0.0), "now": 3}
    pairs = list(gather(futures, iter=True))
    assert pairs[0] == ("now", 3)
    assert pairs[1:] == [("fast", 2), ("slow", 1)]


def test_gather_raises_the_first_failure_without_waiting_for_the_rest(threads):
    release = threading.Event()
    blocked = TaskWorker.options(mode="thread").init()
    try:
        never = blocked.submit(release.wait, 30)
        failing = threads[1].fail("boom")
        with pytest.raises(ValueError, match="boom"):
            gather([never, failing])
        assert not never.done(), "gather must raise as soon as a failure is seen"
    finally:
        release.set()
        blocked.stop()


def test_gather_return_exceptions(calc):
    out = gather([calc.square(2), calc.fail("bad"), 7], return_exceptions=True)
    assert out[0] == 4 and out[2] == 7
    assert isinstance(out[1], ValueError) and str(out[1]) == "bad"


def test_gather_failure_when_already_finished():
    with pytest.raises(KeyError):
        gather([SyncFuture(1), SyncFuture(exception=KeyError("k"))])


def test_gather_cancelled_future():
    f = ConcurrentFuture()
    f.cancel()
    with pytest.raises(cf.CancelledError):
        gather([f])
    assert isinstance(gather([f, 1], return_exceptions=True)[0], cf.CancelledError)


def test_gather_timeout_says_how_many_finished():
    futures = [SyncFuture(1), resolved_later(2, 0.01), pending()]
    with pytest.raises(TimeoutError, match=r"gather: 2 of 3 finished before the 0.3 s timeout"):
        gather(futures, timeout=0.3)
    with pytest.raises(TimeoutError, match="0 of 1"):
        next(iter(gather([pending()], iter=True, timeout=0.05)))


def test_gather_timeout_zero_on_finished_futures_succeeds():
    assert gather([SyncFuture(1), 2], timeout=0) == [1, 2]


def test_a_failed_future_raising_timeout_error_is_not_mistaken_for_our_timeout():
    f = resolved_later(None, 0.0)
    f2 = ConcurrentFuture()
    threading.Timer(0.02, f2.set_exception, (TimeoutError("from the task"),)).start()
    with pytest.raises(TimeoutError, match="from the task"):
        gather([f, f2], timeout=10)


# --- wait -------------------------------------------------------------------------------------


@pytest.mark.parametrize("all_completed", [ALL_COMPLETED, ReturnWhen.ALL_COMPLETED, "all", "ALL_COMPLETED"])
def test_wait_all(calc, all_completed):
    futures = [calc.square(i) for i in range(4)]
    done, not_done = wait(futures, return_when=all_completed)
    assert done == set(futures) and not_done == set()


@pytest.mark.parametrize("first_completed", [FIRST_COMPLETED, "first", "first_completed"])
def test_wait_first_completed(threads, first_completed):
    slow, fast = threads[0].slow(1, 0.5), threads[1].slow(2, 0.01)
    done, not_done = wait([slow, fast], return_when=first_completed, timeout=10)
    assert done == {fast} and not_done == {slow}


@pytest.mark.parametrize("first_exception", [FIRST_EXCEPTION, "exception", "first_exception"])
def test_wait_first_exception(threads, first_exception):
    slow, ok, bad = threads[0].slow(1, 0.5), threads[1].square(3), threads[2].fail("x")
    done, not_done = wait([slow, ok, bad], return_when=first_exception, timeout=10)
    assert bad in done and slow in not_done


def test_wait_first_exception_with_no_failure_waits_for_all(threads):
    futures = [threads[0].slow(1, 0.05), threads[1].square(2)]
    done, not_done = wait(futures, return_when=FIRST_EXCEPTION, timeout=10)
    assert done == set(futures) and not not_done


def test_wait_first_exception_ignores_cancellations_like_concurrent_futures():
    cancelled, later = ConcurrentFuture(), resolved_later(1, 0.05)
    cancelled.cancel()
    done, not_done = wait([cancelled, later], return_when=FIRST_EXCEPTION, timeout=10)
    assert done == {cancelled, later} and not not_done


def test_wait_timeout_returns_what_is_done():
    a, b = SyncFuture(1), pending()
    done, not_done = wait([a, b], timeout=0.05)
    assert done == {a} and not_done == {b}


def test_wait_wraps_plain_values_and_keeps_the_callers_futures():
    f = resolved_later(1, 0.01)
    done, not_done = wait({"a": f, "b": 42})
    assert f in done and not not_done
    (plain,) = done - {f}
    assert isinstance(plain, SyncFuture) and plain.result() == 42


def test_wait_rejects_unknown_return_when():
    with pytest.raises(ValueError, match="return_when"):
        wait([SyncFuture(1)], return_when="sometimes")


def test_repeated_waits_leave_nothing_on_the_futures():
    futures = [pending() for _ in range(50)]
    for _ in range(20):
        wait(futures, timeout=0.001, return_when=FIRST_COMPLETED)
    assert all(not f._waiters and not f._done_callbacks for f in futures)
    futures[0].set_result(1)
    done, _ = wait(futures, return_when=FIRST_COMPLETED)
    assert done == {futures[0]}


# --- event-driven waiting ---------------------------------------------------------------------


def _calls_while(fn) -> int:
    """Function calls (Python and C) this thread makes while ``fn()`` runs. A wait that sleeps
    until it is woken makes as many in 1 s as in 0.05 s; one that polls makes more the longer
    it waits (each look again is calls). The CPU it costs is in benchmarks/bench_synch.py."""
    calls = [0]

    def count(frame, event, arg) -> None:
        if event in ("call", "c_call"):
            calls[0] += 1

    sys.setprofile(count)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls[0]


# Measured: 0-30 extra calls for wait/gather, 80-190 for async_wait (event-loop turns). One
# look over the 10,000 futures with done() is 10,000 calls; waking every 50 ms to look again
# costs about 570 (tried by making the wait wake every 50 ms).
EXTRA_CALLS_BOUND = 500


def _extra_calls_when_waiting_longer(wait_for) -> int:
    wait_for(0.05)  # warm up: first-use imports and caches are not waiting
    return _calls_while(lambda: wait_for(1.0)) - _calls_while(lambda: wait_for(0.05))


def test_waiting_on_many_pending_futures_does_not_poll():
    futures = [pending() for _ in range(10_000)]
    extra = _extra_calls_when_waiting_longer(lambda t: wait(futures, timeout=t))
    assert extra < EXTRA_CALLS_BOUND, f"wait made {extra} more calls in 1 s than in 0.05 s: it is polling"
    extra = _extra_calls_when_waiting_longer(lambda t: asyncio.run(async_wait(futures, timeout=t)))
    assert extra < EXTRA_CALLS_BOUND, f"async_wait made {extra} more calls in 1 s than in 0.05 s: polling"


def test_gather_does_not_poll_while_waiting():
    futures = [pending() for _ in range(10_000)]

    def gather_for(timeout: float) -> None:
        with pytest.raises(TimeoutError, match="0 of 10000"):
            gather(futures, timeout=timeout)

    extra = _extra_calls_when_waiting_longer(gather_for)
    assert extra < EXTRA_CALLS_BOUND, f"gather made {extra} more calls in 1 s than in 0.05 s: it is polling"


# --- remote (polled) futures ------------------------------------------------------------------


class FakeRemote:
    """A future-like object the library must poll in batches (how Ray futures plug in)."""

    polls: list[int] = []

    def __init__(self, value, ready_at: float):
        self.value, self.ready_at = value, ready_at

    @classmethod
    def __concurry_poll__(cls, futures, timeout=0):
        """The finished ones, waiting up to ``timeout`` seconds for the first (as Ray's does)."""
        cls.polls.append(len(futures))
        end = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            done = [f for f in futures if now >= f.ready_at]
            if done or now >= end:
                return done
            time.sleep(min(0.002, end - now))

    def done(self):
        return time.monotonic() >= self.ready_at

    def cancelled(self):
        return False

    def result(self, timeout=None):
        return self.value


@pytest.mark.parametrize("algorithm", ["fixed", "adaptive", "exponential", "progressive"])
def test_remote_futures_are_polled_in_batches(algorithm):
    FakeRemote.polls = []
    now = time.monotonic()
    remotes = [FakeRemote(i, now + 0.05 * (i % 3)) for i in range(30)]
    with temp_config(ray_polling_algorithm=algorithm, ray_polling_interval=0.005):
        assert gather([*remotes, SyncFuture("local")], timeout=10) == [*range(30), "local"]
    assert FakeRemote.polls[0] == 30, "the first poll checks all of them at once"
    assert len(FakeRemote.polls) < 200


def test_remote_futures_timeout_and_async():
    FakeRemote.polls = []
    never = FakeRemote("x", time.monotonic() + 3600)
    soon = FakeRemote("y", time.monotonic() + 0.05)
    done, not_done = wait([never, soon], timeout=0.3)
    assert done == {soon} and not_done == {never}
    assert asyncio.run(async_gather([soon, 1])) == ["y", 1]


# --- progress ---------------------------------------------------------------------------------


def test_gather_and_wait_with_progress(calc):
    out = io.StringIO()
    assert gather([calc.square(i) for i in range(10)], progress={"desc": "squares", "file": out}) == [
        i * i for i in range(10)
    ]
    text = out.getvalue()
    assert "squares" in text and "10/10" in text
    out = io.StringIO()
    wait([calc.square(i) for i in range(4)], progress={"file": out})
    assert "4/4" in out.getvalue()


def test_progress_bar_colour_tells_how_it_ended(threads):
    green, red, grey = "\x1b[32m", "\x1b[31m", "\x1b[38;2;128;128;128m"
    out = io.StringIO()
    gather([threads[0].square(2)], progress={"file": out})
    assert green in out.getvalue()
    out = io.StringIO()
    with pytest.raises(ValueError):
        gather([threads[1].fail("no"), SyncFuture(1)], progress={"file": out})
    assert red in out.getvalue()
    out = io.StringIO()
    wait([pending(), SyncFuture(1)], timeout=0.05, progress={"file": out})
    assert grey in out.getvalue() and "1/2" in out.getvalue()


def test_async_gather_with_progress():
    out = io.StringIO()

    async def main():
        settings = {"desc": "aio", "file": out}
        return await async_gather([asyncio.sleep(0.01, 1), SyncFuture(2)], progress=settings)

    assert asyncio.run(main()) == [1, 2]
    assert "aio" in out.getvalue() and "2/2" in out.getvalue()


def test_progress_true_draws_on_stderr(capsys):
    gather([SyncFuture(1), resolved_later(2, 0.01)], progress=True)
    assert "2/2" in capsys.readouterr().err


def test_task_worker_map_with_progress(calc):
    out = io.StringIO()
    tw = TaskWorker.options(mode="thread").init()
    try:
        assert list(tw.map(abs, [-1, -2, -3], progress={"desc": "abs", "file": out})) == [1, 2, 3]
    finally:
        tw.stop()
    assert "abs" in out.getvalue() and "3/3" in out.getvalue()


# --- async ------------------------------------------------------------------------------------


def test_async_gather_accepts_everything():
    async def double(x):
        await asyncio.sleep(0.01)
        return 2 * x

    async def main():
        w = Calc.options(mode="thread").init()
        try:
            task = asyncio.ensure_future(double(10))
            loop_future = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(0.02, loop_future.set_result, "lf")
            out = await async_gather([double(1), task, w.square(3), SyncFuture(4), 5, loop_future])
            assert out == [2, 20, 9, 4, 5, "lf"]
            assert await async_gather({"a": double(2), "b": w.square(2)}) == {"a": 4, "b": 4}
            assert await async_gather(double(3)) == [6]
            pairs = [p async for p in await async_gather([w.slow("s", 0.2), double(0)], iter=True)]
            assert pairs == [(1, 0), (0, "s")]
            pairs = [p async for p in async_gather({"x": w.slow("s", 0.2), "y": double(0)}, iter=True)]
            assert pairs == [("y", 0), ("x", "s")]
        finally:
            w.stop()

    asyncio.run(main())


def test_async_gather_failures_and_timeouts():
    async def boom():
        raise KeyError("nope")

    async def main():
        with pytest.raises(KeyError):
            await async_gather([boom(), SyncFuture(1)])
        out = await async_gather([boom(), SyncFuture(1)], return_exceptions=True)
        assert isinstance(out[0], KeyError) and out[1] == 1
        with pytest.raises(TimeoutError, match=r"async_gather: 1 of 2 finished before the 0.1 s timeout"):
            await async_gather([asyncio.sleep(0, "x"), pending()], timeout=0.1)

    asyncio.run(main())


def test_async_wait_modes_and_tasks_for_coroutines():
    async def sleeper(delay, value):
        await asyncio.sleep(delay)
        return value

    async def main():
        fast_future = resolved_later("f", 0.01)
        done, not_done = await async_wait([sleeper(5, "slow"), fast_future], return_when="first", timeout=10)
        assert done == {fast_future}
        (task,) = not_done
        assert isinstance(task, asyncio.Task)
        task.cancel()
        done, not_done = await async_wait([sleeper(0, 1), SyncFuture(2), 3], return_when=ALL_COMPLETED)
        assert not not_done and len(done) == 3
        done, not_done = await async_wait([pending()], timeout=0.05)
        assert not done and len(not_done) == 1

    asyncio.run(main())


@pytest.mark.parametrize("mode", WAITING_MODES)
def test_async_waiting_never_blocks_the_loop(mode):
    ticks: list[float] = []

    async def heartbeat():
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def main():
        w = Calc.options(mode=mode).init()
        try:
            beat = asyncio.ensure_future(heartbeat())
            await asyncio.sleep(0)
            ticks.clear()
            assert await async_gather([w.slow(1, 0.5), w.slow(2, 0.0)]) == [1, 2]
            gather_ticks = len(ticks)
            ticks.clear()
            await async_wait([w.slow(3, 0.5)])
            wait_ticks = len(ticks)
            beat.cancel()
        finally:
            w.stop()
        assert gather_ticks >= 10, f"only {gather_ticks} heartbeats while async_gather waited 0.5 s"
        assert wait_ticks >= 10, f"only {wait_ticks} heartbeats while async_wait waited 0.5 s"

    asyncio.run(main())


def test_sync_gather_on_a_future_of_the_running_loop_is_refused():
    async def main():
        fut = asyncio.get_running_loop().create_future()
        with pytest.raises(RuntimeError, match="async_"):
            gather([fut])

    asyncio.run(main())


def test_several_collections_are_refused_naming_the_argument():
    f, g = ConcurrentFuture(), ConcurrentFuture()
    with pytest.raises(TypeError, match="argument 2 is a list"):
        gather(f, [g])
    with pytest.raises(TypeError, match="wait: pass one collection of futures"):
        wait([f], [g], timeout=0.01)
    f.set_result(1)
    g.set_result(2)
    assert gather(f, g) == [1, 2]


@pytest.mark.parametrize("timeout, error", [("1", TypeError), (-1, ValueError), (float("nan"), ValueError)])
def test_bad_timeout_is_named_before_waiting(timeout, error):
    f = ConcurrentFuture()
    with pytest.raises(error, match="timeout must be a number of seconds"):
        gather([f], timeout=timeout)
    with pytest.raises(error, match="timeout must be a number of seconds"):
        gather([f], timeout=timeout, iter=True)  # at the call, not at the first next()
    with pytest.raises(error, match="timeout must be a number of seconds"):
        wait([f], timeout=timeout)


def test_bad_progress_settings_are_named_before_anything_runs():
    with pytest.raises(ValueError, match=r"progress settings \[.colr.\] are not accepted; accepted:.*colour"):
        gather([SyncFuture(1)], progress={"colr": "red"})
    with pytest.raises(TypeError, match="progress must be True, False or a dict"):
        wait([SyncFuture(1)], progress="yes")
    calls = []
    tw = Executor(mode="thread")
    try:
        with pytest.raises(ValueError, match="map: progress settings"):
            tw.map(calls.append, range(3), progress={"nonsense_kw": 1})
        tw.submit(int).result()  # the worker served nothing before: the map was refused up front
        assert calls == []
    finally:
        tw.stop()
