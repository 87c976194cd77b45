"""``async def`` methods in every mode (SPEC §2.7)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from concurry import worker


class AsyncThing:
    def __init__(self):
        self.count = 0
        self.in_flight = 0
        self.max_in_flight = 0

    async def add(self, a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    async def incr(self) -> int:
        await asyncio.sleep(0)
        self.count += 1
        return self.count

    async def fail(self) -> None:
        await asyncio.sleep(0)
        raise OSError("async failure")

    async def io(self, delay: float) -> int:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(delay)
        self.in_flight -= 1
        return 1

    def peak(self) -> int:
        return self.max_in_flight

    async def loop_thread(self) -> int:
        asyncio.get_running_loop()  # raises if no loop is running
        return threading.get_ident()

    def sync_thread(self) -> int:
        return threading.get_ident()

    async def make_queue(self) -> None:
        self.queue = asyncio.Queue()
        self.loop_id = id(asyncio.get_running_loop())

    async def put_get(self, item: int) -> tuple[int, bool]:
        await self.queue.put(item)
        same_loop = id(asyncio.get_running_loop()) == self.loop_id
        return await self.queue.get(), same_loop

    async def gather_inside(self, n: int) -> list[int]:
        return await asyncio.gather(*(self.add(i, i) for i in range(n)))


def test_async_method_returns_a_future_of_the_result(mode):
    w = worker(AsyncThing).options(mode=mode).init()
    try:
        assert w.add(2, 3).result(timeout=10) == 5
        assert w.gather_inside(5).result(timeout=10) == [0, 2, 4, 6, 8]
        assert [w.incr().result(timeout=10) for _ in range(3)] == [1, 2, 3]
    finally:
        w.stop()


def test_async_method_exception_keeps_type(mode):
    w = worker(AsyncThing).options(mode=mode).init()
    try:
        with pytest.raises(OSError, match="async failure"):
            w.fail().result(timeout=10)
        assert w.add(1, 1).result(timeout=10) == 2
    finally:
        w.stop()


def test_async_method_blocking(mode):
    w = worker(AsyncThing).options(mode=mode, blocking=True).init()
    try:
        assert w.add(4, 4) == 8
    finally:
        w.stop()


def test_async_methods_run_on_a_loop_owned_by_the_worker(mode):
    w = worker(AsyncThing).options(mode=mode).init()
    try:
        tid = w.loop_thread().result(timeout=10)
        if mode == "asyncio":
            # async and plain def calls both run on the worker's loop thread
            assert tid == w.sync_thread().result(timeout=10)
            assert tid != threading.get_ident()
    finally:
        w.stop()


def test_sync_mode_async_method_from_inside_a_running_loop():
    w = worker(AsyncThing).options(mode="sync").init()
    try:
        async def main():
            return w.add(1, 2).result()

        assert asyncio.run(main()) == 3
    finally:
        w.stop()


def test_asyncio_mode_interleaves_thousands_of_awaits():
    w = worker(AsyncThing).options(mode="asyncio").init()
    try:
        futures = [w.io(0.2) for _ in range(3000)]
        assert sum(f.result(timeout=30) for f in futures) == 3000
        # they were all in flight at once on the single worker, not one after another
        assert w.peak().result(timeout=10) > 1000
    finally:
        w.stop()


@pytest.mark.parametrize("mode", ["sync", "thread", "process"])
def test_non_asyncio_modes_run_async_calls_one_at_a_time(mode):
    w = worker(AsyncThing).options(mode=mode).init()
    try:
        futures = [w.io(0.001) for _ in range(20)]
        assert sum(f.result(timeout=10) for f in futures) == 20
        assert w.peak().result(timeout=10) == 1
    finally:
        w.stop()


def test_await_worker_futures_from_a_coroutine(mode):
    w = worker(AsyncThing).options(mode=mode).init()
    try:
        async def main():
            a = await w.add(1, 2)
            b = await w.add(a, 3)
            return await asyncio.gather(w.add(b, 1), w.incr())

        assert asyncio.run(main()) == [7, 1]
    finally:
        w.stop()


def test_stop_waits_for_in_flight_async_calls(concurrent_mode):
    w = worker(AsyncThing).options(mode=concurrent_mode).init()
    futures = [w.io(0.05) for _ in range(20)]
    w.stop(timeout=10)
    assert [f.result(timeout=1) for f in futures] == [1] * 20


def test_asyncio_stop_timeout_cancels_in_flight_async_calls():
    w = worker(AsyncThing).options(mode="asyncio").init()
    futures = [w.io(30) for _ in range(10)]
    w.stop(timeout=0.2)
    assert all(f.cancelled() for f in futures)


def test_async_calls_share_one_loop_across_calls(mode):
    """Loop-bound objects made by one call (an asyncio.Queue) keep working in later calls."""
    w = worker(AsyncThing).options(mode=mode).init()
    try:
        w.make_queue().result(timeout=10)
        assert w.put_get(5).result(timeout=10) == (5, True)
        assert w.put_get(6).result(timeout=10) == (6, True)
    finally:
        w.stop()
