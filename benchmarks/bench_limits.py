"""Limits: the cost of an uncontended acquire+release, and how fast a waiter is woken.

Rows (each against a baseline in the same run):
- thread set, one RateLimit + one ResourceLimit, 20k acquire+release vs a bare ``threading.Lock``
  doing the same arithmetic: <= 4 us and <= 5x
- the same, process-shared vs a bare ``multiprocessing.Lock`` over a shared-memory struct:
  <= 15 us and <= 10x
- a thread worker with a CallLimit of very high capacity vs the same worker without limits:
  <= 2 us more per call
- a waiter on a ResourceLimit gets the unit after its release (95th percentile of 200; thread, and a
  waiter in another process): <= 2 ms
"""

from __future__ import annotations

import mmap
import multiprocessing as mp
import statistics
import threading
import time

from common import Row, best_of, thread_worker_calls, timed
from concurry import CallLimit, LimitSet, RateLimit, ResourceLimit, worker

TITLE = "Limits: acquire+release cost, worker call limit, wake-up latency"

N = 20_000
CALLS = 10_000
WAKES = 200


def _limits() -> list:
    return [RateLimit("tokens", 10**9, 1.0), ResourceLimit("slots", 2)]


def _ours(limit_set: LimitSet) -> float:
    acquire, request = limit_set.acquire, {"tokens": 1}

    def body() -> None:
        for _ in range(N):
            with acquire(request):
                pass

    return best_of(lambda: timed(body, N))


def _bare(lock, state) -> float:
    """The floor: one lock hold to refill a bucket and take a token and a slot, one to give the
    slot back."""
    monotonic = time.monotonic

    def body() -> None:
        for _ in range(N):
            with lock:
                now = monotonic()
                tokens = min(1e9, state[0] + (now - state[1]) * 1e9)
                state[1] = now
                if tokens >= 1 and state[2] + 1 <= 2:
                    state[0] = tokens - 1
                    state[2] += 1
            with lock:
                state[2] -= 1

    return best_of(lambda: timed(body, N))


def thread_set() -> tuple[float, float]:
    return _ours(LimitSet(_limits())), _bare(threading.Lock(), [1e9, time.monotonic(), 0.0])


def process_set() -> tuple[float, float]:
    shared = LimitSet(_limits(), shared=True, mode="process")
    memory = mmap.mmap(-1, 64)
    state = memoryview(memory).cast("d")
    state[0], state[1] = 1e9, time.monotonic()
    try:
        return _ours(shared), _bare(mp.get_context("spawn").Lock(), state)
    finally:
        state.release()


def call_limited_worker() -> tuple[float, float]:
    limited, plain = [], []
    for _ in range(3):  # alternate the two sides: thread placement skews whichever runs second
        limited.append(thread_worker_calls(CALLS, limits=[CallLimit(10**9, 1.0)]))
        plain.append(thread_worker_calls(CALLS))
    return min(limited), min(plain)


def _queued(limit_set: LimitSet):
    view = limit_set._store.view  # the ledger's waiter count (a benchmark may peek)
    return lambda: view[1] > 0


def thread_wake() -> float:
    limit_set = LimitSet([ResourceLimit("slot", 1)])
    latencies = []
    waiting = _queued(limit_set)
    granted: list[float] = []

    def waiter() -> None:
        with limit_set.acquire() as acquisition:
            granted.append(acquisition.granted_at)

    for _ in range(WAKES):
        holder = limit_set.acquire()
        t = threading.Thread(target=waiter)
        t.start()
        while not waiting():
            time.sleep(0.0005)
        released_at = time.monotonic()
        holder.release()
        t.join()
        latencies.append(granted[-1] - released_at)
    return statistics.quantiles(latencies, n=20)[-1]  # the 95th percentile


class Waiter:
    """A process worker that waits for the unit of a shared set and says when it got it."""

    def __init__(self, limit_set: LimitSet) -> None:
        self.limit_set = limit_set

    def take(self) -> float:
        with self.limit_set.acquire() as acquisition:
            return acquisition.granted_at


def process_wake() -> float:
    limit_set = LimitSet([ResourceLimit("slot", 1)], shared=True, mode="process")
    waiter = worker(Waiter).options(mode="process").init(limit_set)
    waiting = _queued(limit_set)
    latencies = []
    try:
        waiter.take().result()  # warm: the child is up
        for _ in range(WAKES):
            holder = limit_set.acquire()
            granted = waiter.take()
            while not waiting():
                time.sleep(0.0005)
            released_at = time.monotonic()
            holder.release()
            latencies.append(granted.result() - released_at)
    finally:
        waiter.stop()
    return statistics.quantiles(latencies, n=20)[-1]  # the 95th percentile


def run() -> list[Row]:
    rows = []
    mine, base = thread_set()
    rows.append(Row(
        f"thread LimitSet, rate + resource, {N:,} acquire+release", mine, "threading.Lock + arithmetic",
        base, unit="us/op", budget="<= 4 us and <= 5x", ok=mine <= 4e-6 and mine <= 5 * base,
    ))
    mine, base = process_set()
    rows.append(Row(
        f"process-shared LimitSet, same, {N:,} times", mine, "multiprocessing.Lock + shared memory",
        base, unit="us/op", budget="<= 15 us and <= 10x", ok=mine <= 15e-6 and mine <= 10 * base,
    ))
    mine, base = call_limited_worker()
    rows.append(Row(
        f"thread worker with a CallLimit (+{(mine - base) * 1e6:.2f} us)", mine, "same worker, no limits",
        base, budget="<= 2 us more", ok=mine - base <= 2e-6,
    ))
    for name, latency in (("thread", thread_wake()), ("another process", process_wake())):
        rows.append(Row(
            f"ResourceLimit waiter woken after a release ({name}, 95th percentile of {WAKES})", latency,
            unit="ms", budget="<= 2 ms", ok=latency <= 2e-3,
        ))
    return rows
