"""TaskWorker, @task and Executor for single workers (SPEC §5)."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import threading
import time

import pytest

from concurry import BaseFuture, Executor, TaskWorker, WorkerStoppedError, task
from conftest import OUT_OF_PROCESS, concurry_threads, wait_until


def square(x: int) -> int:
    return x * x


def add(a: int, b: int = 0) -> int:
    return a + b


def fail_on(x: int, bad: int = 3) -> int:
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


def slow(x: float) -> float:
    time.sleep(x)
    return x


def where() -> tuple[int, int]:
    return os.getpid(), threading.get_ident()


async def async_double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


# ---- TaskWorker ----

def test_taskworker_submit(mode):
    tw = TaskWorker.options(mode=mode).init()
    try:
        f = tw.submit(add, 1, b=2)
        assert isinstance(f, BaseFuture)
        assert f.result(timeout=10) == 3
        assert tw.submit(async_double, 21).result(timeout=10) == 42
    finally:
        tw.stop()


def test_taskworker_is_a_concurrent_futures_executor(mode):
    tw = TaskWorker.options(mode=mode).init()
    try:
        assert isinstance(tw, cf.Executor)
    finally:
        tw.shutdown()


def test_taskworker_lambdas_and_closures(mode):
    offset = 100

    def closure(x):
        return x + offset

    tw = TaskWorker.options(mode=mode).init()
    try:
        assert tw.submit(lambda: "lambda").result(timeout=10) == "lambda"
        assert tw.submit(closure, 1).result(timeout=10) == 101
        assert list(tw.map(lambda x, y: x * y, [1, 2, 3], [4, 5, 6])) == [4, 10, 18]
    finally:
        tw.stop()


def test_taskworker_map_in_input_order(mode):
    tw = TaskWorker.options(mode=mode).init()
    try:
        assert list(tw.map(square, range(20))) == [x * x for x in range(20)]
        assert list(tw.map(add, [1, 2], [10, 20])) == [11, 22]
        assert list(tw.map(square, [])) == []
        assert list(tw.map(square, range(3), chunksize=2)) == [0, 1, 4]
    finally:
        tw.stop()


def test_taskworker_map_raises_first_failure_when_reached(mode):
    tw = TaskWorker.options(mode=mode).init()
    try:
        results = tw.map(fail_on, range(6))
        assert next(results) == 0
        assert next(results) == 1
        assert next(results) == 2
        with pytest.raises(ValueError, match="bad item 3"):
            next(results)
    finally:
        tw.stop()


def test_taskworker_map_timeout(concurrent_mode):
    tw = TaskWorker.options(mode=concurrent_mode).init()
    try:
        # the first call's round trip must fit in the timeout even on a loaded machine
        results = tw.map(slow, [0.0, 3.0, 3.0], timeout=1.0)
        assert next(results) == 0.0
        with pytest.raises(TimeoutError, match="timed out"):
            next(results)
    finally:
        tw.stop(timeout=5)


def test_taskworker_submit_failure(mode):
    tw = TaskWorker.options(mode=mode).init()
    try:
        with pytest.raises(ValueError, match="bad item 3"):
            tw.submit(fail_on, 3).result(timeout=10)
    finally:
        tw.stop()


def test_taskworker_blocking_submit(mode):
    tw = TaskWorker.options(mode=mode, blocking=True).init()
    try:
        assert tw.submit(square, 5) == 25
    finally:
        tw.stop()


def test_taskworker_runs_on_its_worker(mode):
    tw = TaskWorker.options(mode=mode).init()
    try:
        pid, tid = tw.submit(where).result(timeout=10)
        if mode == "sync":
            assert (pid, tid) == (os.getpid(), threading.get_ident())
        elif mode in OUT_OF_PROCESS:
            assert pid != os.getpid()
        else:
            assert pid == os.getpid() and tid != threading.get_ident()
    finally:
        tw.stop()


def test_taskworker_run_in_executor(mode):
    tw = TaskWorker.options(mode=mode).init()
    try:
        async def main():
            loop = asyncio.get_running_loop()
            return await asyncio.gather(
                loop.run_in_executor(tw, square, 3), loop.run_in_executor(tw, add, 1, 2)
            )

        assert asyncio.run(main()) == [9, 3]
    finally:
        tw.shutdown()


def test_shutdown_wait_true_finishes_submitted_calls(concurrent_mode):
    tw = TaskWorker.options(mode=concurrent_mode).init()
    futures = [tw.submit(slow, 0.01) for _ in range(5)]
    tw.shutdown(wait=True)
    assert all(f.done() and f.result() == 0.01 for f in futures)
    with pytest.raises(RuntimeError, match="stopped"):
        tw.submit(square, 1)


def test_shutdown_wait_false_returns_at_once_and_calls_still_finish(concurrent_mode):
    tw = TaskWorker.options(mode=concurrent_mode).init()
    futures = [tw.submit(slow, 0.05) for _ in range(3)]
    tw.shutdown(wait=False)
    assert not all(f.done() for f in futures)  # shutdown returned before they finished
    assert [f.result(timeout=10) for f in futures] == [0.05] * 3


@pytest.mark.parametrize("m", ["thread", "asyncio"])
def test_shutdown_cancel_futures(m):
    gate = threading.Event()
    tw = TaskWorker.options(mode=m).init()
    first = tw.submit(gate.wait, 10)
    assert wait_until(first.running)
    rest = [tw.submit(square, i) for i in range(5)]
    stopper = threading.Thread(target=tw.shutdown, kwargs={"cancel_futures": True})
    stopper.start()
    assert wait_until(lambda: all(f.cancelled() for f in rest))
    gate.set()
    stopper.join(10)
    assert first.result(timeout=5) is True


def touch_and_sleep(path: str, seconds: float) -> float:
    open(path, "w").close()
    time.sleep(seconds)
    return seconds


def test_shutdown_cancel_futures_in_process_mode(tmp_path):
    tw = TaskWorker.options(mode="process").init()
    marker = tmp_path / "started"
    first = tw.submit(touch_and_sleep, str(marker), 0.5)
    rest = [tw.submit(square, i) for i in range(5)]
    assert wait_until(marker.exists)
    tw.shutdown(cancel_futures=True)
    assert first.result(timeout=5) == 0.5  # the running call finishes
    assert all(f.cancelled() for f in rest)  # the ones not started are cancelled


def test_taskworker_context_manager(mode):
    before = set(concurry_threads())
    with TaskWorker.options(mode=mode).init() as tw:
        assert tw.submit(square, 3).result(timeout=10) == 9
    with pytest.raises(WorkerStoppedError):
        tw.submit(square, 3)
    assert wait_until(lambda: set(concurry_threads()) <= before)


def test_taskworker_default_init():
    tw = TaskWorker.init()
    try:
        assert tw.mode == "sync"
        assert tw.submit(square, 2).result() == 4
    finally:
        tw.stop()


# ---- Executor ----

def test_executor_returns_a_taskworker(mode):
    ex = Executor(mode=mode)
    try:
        assert isinstance(ex, cf.Executor)
        assert ex.mode == mode
        assert ex.submit(square, 4).result(timeout=10) == 16
        assert list(ex.map(square, [1, 2, 3])) == [1, 4, 9]
    finally:
        ex.shutdown()


def test_executor_rejects_bad_options():
    with pytest.raises(ValueError, match="unknown worker option 'max_worker'"):
        Executor(mode="thread", max_worker=2)
    with pytest.raises(ValueError, match="max_workers=4 is not accepted for mode='sync'"):
        Executor(mode="sync", max_workers=4)


# ---- @task ----

def test_bare_task_decorator():
    @task
    def double(x: int) -> int:
        """Doubles."""
        return 2 * x

    try:
        assert double.__name__ == "double"
        assert double.__doc__ == "Doubles."
        f = double(21)
        assert isinstance(f, BaseFuture)
        assert f.result() == 42
    finally:
        double.stop()


def test_task_with_options(mode):
    @task(mode=mode)
    def cube(x: int) -> int:
        return x**3

    try:
        assert cube(2).result(timeout=10) == 8
        assert cube.submit(3).result(timeout=10) == 27
        assert list(cube.map(range(4))) == [0, 1, 8, 27]
    finally:
        cube.stop()


def test_task_runs_on_its_worker(concurrent_mode):
    @task(mode=concurrent_mode)
    def here():
        return os.getpid(), threading.get_ident()

    try:
        pid, tid = here().result(timeout=10)
        assert (pid, tid) != (os.getpid(), threading.get_ident())
    finally:
        here.stop()


def test_task_blocking(mode):
    @task(mode=mode, blocking=True)
    def inc(x):
        return x + 1

    try:
        assert inc(1) == 2
    finally:
        inc.stop()


def test_async_task(mode):
    @task(mode=mode)
    async def later(x):
        await asyncio.sleep(0)
        return x

    try:
        assert later(5).result(timeout=10) == 5
    finally:
        later.stop()


def test_task_context_manager_and_stop(concurrent_mode):
    before = set(concurry_threads())
    with task(mode=concurrent_mode)(square) as sq:
        assert sq(9).result(timeout=10) == 81
    with pytest.raises(WorkerStoppedError, match="task square is stopped"):
        sq(1)
    sq.stop()  # idempotent
    assert wait_until(lambda: set(concurry_threads()) <= before)


def test_task_map_first_failure(mode):
    t = task(mode=mode)(fail_on)
    try:
        with pytest.raises(ValueError, match="bad item 3"):
            list(t.map(range(10)))
    finally:
        t.stop()


def test_task_rejects_bad_options():
    with pytest.raises(ValueError, match="mode='warp' is not accepted"):
        task(mode="warp")
    with pytest.raises(TypeError, match="blocking must be True or False"):
        task(mode="thread", blocking="yes")


def test_map_with_progress_bar(mode):
    tw = TaskWorker.options(mode=mode).init()
    try:
        assert list(tw.map(square, range(10), progress=True)) == [x * x for x in range(10)]
        assert list(tw.map(square, range(3), progress={"desc": "squares"})) == [0, 1, 4]
        with pytest.raises(ValueError, match="bad item 3"):
            list(tw.map(fail_on, range(5), progress=True))
    finally:
        tw.stop()
