"""Worker pools (SPEC §4): speed-up, dispatch overhead and start-up, each against a baseline
measured in the same run."""

from __future__ import annotations

import dataclasses
import time

from common import Row, best_of, timed
from concurry import ExecutionMode, TaskWorker, worker
from concurry.config import resolve_options
from concurry.pool import create_pool

TITLE = "Worker pools"


@worker
class Noop:
    def noop(self) -> None:
        return None


def spin(n: int) -> int:
    """Pure-Python CPU work."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def _spin_size(seconds: float = 0.05) -> int:
    n = 200_000
    start = time.perf_counter()
    spin(n)
    return max(1, int(n * seconds / (time.perf_counter() - start)))


_DEFAULT = object()


def _pool_of_one(mode: str, max_queued_tasks: object = _DEFAULT):
    """A real pool (dispatch layer included) with a single worker; ``init()`` would return a
    plain worker for ``max_workers=1``."""
    options = dataclasses.replace(resolve_options({"mode": ExecutionMode.parse(mode)}), max_workers=1)
    if max_queued_tasks is not _DEFAULT:
        options = dataclasses.replace(options, max_queued_tasks=max_queued_tasks)
    return create_pool(Noop, (), {}, options)


def _calls_then_wait(handle, calls: int) -> float:
    def run() -> None:
        noop = handle.noop
        futures = [noop() for _ in range(calls)]
        for f in futures:
            f.result()

    return timed(run, calls)


def cpu_speedup() -> Row:
    n = _spin_size()
    calls = 40

    def run(max_workers: int) -> float:
        tw = TaskWorker.options(mode="process", max_workers=max_workers).init()
        try:
            tw.submit(spin, 10).result()  # warm
            return timed(lambda: [f.result() for f in [tw.submit(spin, n) for _ in range(calls)]], calls)
        finally:
            tw.stop()

    single = best_of(lambda: run(1), 2)
    pool = best_of(lambda: run(2), 2)
    return Row(
        "process pool of 2, 40 x ~50 ms CPU calls", pool, "1 process worker", single, unit="ms/call",
        budget="<= 0.55x", ok=pool / single <= 0.55,
    )


def thread_pool_throughput() -> Row:
    calls = 20_000
    single_worker = Noop.options(mode="thread").init()
    pool = Noop.options(mode="thread", max_workers=8).init()
    try:
        _calls_then_wait(pool, 1000)
        _calls_then_wait(single_worker, 1000)
        ours = best_of(lambda: _calls_then_wait(pool, calls), 5)
        base = best_of(lambda: _calls_then_wait(single_worker, calls), 5)
    finally:
        single_worker.stop()
        pool.stop()
    return Row(
        "thread pool of 8, 20k no-op calls then wait all", ours, "1 thread worker", base,
        budget="<= 1.5x", ok=ours / base <= 1.5,
    )


def dispatch_overhead(mode: str, calls: int, max_queued_tasks: object = None) -> Row:
    """Per-call cost of a pool of 1 against a single worker. With ``max_queued_tasks=None`` this
    is the dispatch layer alone; with the mode's default cap a burst larger than the cap also
    pays for backpressure (calls waiting in the library's queue), shown for information."""
    single_worker = Noop.options(mode=mode).init()
    pool = _pool_of_one(mode, max_queued_tasks)
    try:
        _calls_then_wait(pool, 500)
        _calls_then_wait(single_worker, 500)
        ours = best_of(lambda: _calls_then_wait(pool, calls), 5)
        base = best_of(lambda: _calls_then_wait(single_worker, calls), 5)
    finally:
        single_worker.stop()
        pool.stop()
    if max_queued_tasks is None:
        return Row(
            f"{mode} pool of 1 (dispatch layer), {calls} no-op calls then wait all", ours,
            f"1 {mode} worker", base, budget="<= 1.2x", ok=ours / base <= 1.2,
        )
    cap = pool.pool_stats()["max_queued_tasks"]
    return Row(
        f"{mode} pool of 1, default max_queued_tasks={cap}, burst of {calls} no-op calls (backpressure)",
        ours, f"1 {mode} worker", base, budget="(info)",
    )


def active_against_round_robin(mode: str, workers: int, calls: int) -> Row:
    """``active`` (least unfinished, calls moved off busy workers to idle ones) against
    ``round_robin`` on the same burst of no-op calls, same run."""
    pools = {
        algorithm: Noop.options(mode=mode, max_workers=workers, load_balancing=algorithm).init()
        for algorithm in ("active", "round_robin")
    }
    try:
        for pool in pools.values():
            _calls_then_wait(pool, calls // 10)
        ours = best_of(lambda: _calls_then_wait(pools["active"], calls), 5)
        base = best_of(lambda: _calls_then_wait(pools["round_robin"], calls), 5)
    finally:
        for pool in pools.values():
            pool.stop()
    return Row(
        f"{mode} pool of {workers}, active, {calls // 1000}k no-op calls then wait all", ours,
        "same pool, round_robin", base, budget="<= 1.3x", ok=ours / base <= 1.3,
    )


def process_pool_start() -> Row:
    def start(max_workers: int) -> float:
        begin = time.perf_counter()
        handle = Noop.options(mode="process", max_workers=max_workers).init()
        elapsed = time.perf_counter() - begin
        handle.stop()
        return elapsed

    ours = best_of(lambda: start(4), 3)
    base = best_of(lambda: start(1), 3)
    return Row(
        "process pool of 4: start to all ready", ours, "1 process worker start", base, unit="ms",
        budget="<= 400 ms", ok=ours <= 0.4,
    )


def run() -> list[Row]:
    rows = [
        thread_pool_throughput(),
        dispatch_overhead("thread", 20_000),
        active_against_round_robin("thread", 8, 20_000),
    ]
    try:
        from concurry.backends.process import ProcessBackend  # noqa: F401
    except ImportError:
        print("(process backend not available: process pool rows skipped)")
        return rows
    rows += [
        dispatch_overhead("process", 2_000),
        dispatch_overhead("process", 2_000, _DEFAULT),
        active_against_round_robin("process", 2, 2_000),
        process_pool_start(),
        cpu_speedup(),
    ]
    return rows
