"""Process pools on CPU-bound work: throughput as workers are added, against
``concurrent.futures.ProcessPoolExecutor`` with the same number of workers, same run.

Each call runs a pure-Python loop of ~30 ms (sized on this machine first). Both pools are
started and warmed before timing, and timed in turns. Rows are seconds per call
(lower is better; the ratio is ours over the executor's); ``SERIES`` holds calls per second by
worker count for the docs' scaling chart. Budget: <= 1.1x the executor at every size.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time

import common
from common import Row, timed
from concurry import TaskWorker

TITLE = "Scaling: process pool throughput on CPU-bound calls vs ProcessPoolExecutor"

CALL_SECONDS = 0.03
CALLS_PER_WORKER = 12
WORKER_COUNTS = (1, 2, 4)
REPEAT = 3
QUICK = {"CALLS_PER_WORKER": 5, "WORKER_COUNTS": (1, 2)}

SERIES: dict = {}


def spin(n: int) -> int:
    """Pure-Python CPU work."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def _spin_size(seconds: float) -> int:
    """Loop length for ``seconds`` of CPU here; the best of 3 tries, so a burst of load on the
    machine does not shrink it."""
    n = 200_000
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        spin(n)
        best = min(best, time.perf_counter() - start)
    return max(1, int(n * seconds / best))


def _throughput(submit, n: int, calls: int) -> float:
    """Seconds per call for ``calls`` calls submitted at once, then all waited for."""
    return timed(lambda: [f.result() for f in [submit(spin, n) for _ in range(calls)]], calls)


def measure(workers: int, n: int, calls: int) -> tuple[float, float]:
    """(ours, executor's) best seconds per call; both pools alive and warm, timed in turns so
    that load drifting on the machine hits both alike."""
    pool = TaskWorker.options(mode="process", max_workers=workers).init()
    executor = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        for submit in (pool.submit, executor.submit):
            for f in [submit(spin, 10) for _ in range(workers * 2)]:  # warm: every worker up
                f.result()
        mine, base = [], []
        for _ in range(1 if common.QUICK else REPEAT):
            mine.append(_throughput(pool.submit, n, calls))
            base.append(_throughput(executor.submit, n, calls))
    finally:
        pool.stop()
        executor.shutdown()
    return min(mine), min(base)


def run() -> list[Row]:
    n = _spin_size(CALL_SECONDS)
    rows = []
    points = []
    for workers in WORKER_COUNTS:
        calls = CALLS_PER_WORKER * workers
        mine, base = measure(workers, n, calls)
        points.append({"workers": workers, "ours_per_s": 1 / mine, "baseline_per_s": 1 / base})
        rows.append(
            Row(
                f"process pool of {workers}, {calls} CPU-bound calls",
                mine,
                f"ProcessPoolExecutor({workers})",
                base,
                unit="ms/call",
                budget="<= 1.1x",
                ok=mine <= 1.1 * base,
            )
        )
    # what one call really took (on the executor's single worker): the sizing above is only a guess
    # on a loaded machine
    call_seconds = WORKER_COUNTS[0] / points[0]["baseline_per_s"]
    SERIES["throughput"] = {"cpus": os.cpu_count(), "call_seconds": call_seconds, "points": points}
    return rows
