"""``gather``/``wait`` and ``ProgressBar`` costs (SPEC §7, §8; issue #5 budgets)."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import gc
import time

from common import Row, best_of, timed
from concurry import ConcurrentFuture, Executor, ProgressBar, SyncFuture, async_wait, gather, wait

TITLE = "wait / gather / ProgressBar"

N = 10_000


def _noop() -> None:
    return None


def gather_completed() -> Row:
    futures = [SyncFuture(i) for i in range(N)]
    ours = best_of(lambda: timed(lambda: gather(futures), N), repeat=7)
    base = best_of(lambda: timed(lambda: [f.result() for f in futures], N), repeat=7)
    return Row(
        "gather of 10k completed futures", ours, "[f.result() for f in fs]", base,
        budget="<= 5 us/future", ok=ours <= 5e-6, unit="us/future",
    )


def gather_100k_finished() -> Row:
    """Issue 10: gather of many finished worker futures costs about what reading them does."""
    futures = []
    for i in range(100_000):  # what a worker hands back: resolved ConcurrentFutures
        future = ConcurrentFuture()
        future.set_running_or_notify_cancel()
        future.set_result(i)
        futures.append(future)
    count = len(futures)
    ours, base = [], []
    for _ in range(7):  # interleaved, so drift in machine load hits both alike
        gc.collect()
        ours.append(timed(lambda: gather(futures), count))
        gc.collect()
        base.append(timed(lambda: [f.result() for f in futures], count))
    ours_best, base_best = min(ours), min(base)
    return Row(
        "gather of 100k finished futures", ours_best, "[f.result() for f in fs]", base_best,
        budget="<= 1.3x", ok=ours_best <= 1.3 * base_best, unit="us/future",
    )


def gather_iter_thread_pool() -> Row:
    pool = Executor(mode="thread", max_workers=4)
    try:
        def ours_run() -> float:
            start = time.perf_counter()
            futures = [pool.submit(_noop) for _ in range(N)]
            for _ in gather(futures, iter=True):
                pass
            return (time.perf_counter() - start) / N

        def base_run() -> float:
            start = time.perf_counter()
            futures = [pool.submit(_noop) for _ in range(N)]
            for f in cf.as_completed(futures):
                f.result()
            return (time.perf_counter() - start) / N

        ours_run(), base_run()  # warm up
        ours, base = [], []
        for _ in range(5):  # interleaved, so drift in machine load hits both alike
            ours.append(ours_run())
            base.append(base_run())
    finally:
        pool.stop()
    ours_best, base_best = min(ours), min(base)
    return Row(
        "submit 10k to a thread pool + gather(iter=True)", ours_best,
        "same + cf.as_completed", base_best, budget="<= 1.10x", ok=ours_best <= 1.10 * base_best,
    )


def progress_million_updates() -> Row:
    def ours_run() -> float:
        bar = ProgressBar(total=1_000_000, file=open("/dev/null", "w"))  # noqa: SIM115
        start = time.perf_counter()
        for _ in range(1_000_000):
            bar.update(1)
        bar.success()
        bar.tqdm.fp.close()
        return time.perf_counter() - start

    def base_run() -> float:
        counter = [0]

        def update(n: int = 1) -> None:
            counter[0] += n

        start = time.perf_counter()
        for _ in range(1_000_000):
            update(1)
        return time.perf_counter() - start

    ours = best_of(ours_run, repeat=3)
    base = best_of(base_run, repeat=3)
    return Row(
        "ProgressBar: 1,000,000 update(1)", ours, "bare counter function", base,
        unit="s total", budget="well under 2 s", ok=ours < 2.0,
    )


def wait_cpu_on_pending() -> Row:
    futures = [ConcurrentFuture() for _ in range(N)]
    start = time.process_time()
    wait(futures, timeout=1.0)
    cpu = time.process_time() - start
    return Row(
        "CPU while wait() holds 10k pending futures for 1 s", cpu,
        unit="s CPU", budget="well under 0.1 s", ok=cpu < 0.1,
    )


def _cpu(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def async_wait_cpu_on_pending() -> Row:
    """The CPU side of tests/test_synch.py's no-polling checks (which count calls), for
    async_wait; the baseline is concurrent.futures.wait on the same futures, in the same run."""
    futures = [ConcurrentFuture() for _ in range(N)]
    cpu = _cpu(lambda: asyncio.run(async_wait(futures, timeout=1.0)))
    base = _cpu(lambda: cf.wait(futures, timeout=1.0))
    return Row(
        "CPU while async_wait() holds 10k pending futures for 1 s", cpu, "cf.wait", base,
        unit="s CPU", budget="well under 0.1 s", ok=cpu < 0.1,
    )


def gather_cpu_on_pending() -> Row:
    """The same for gather, which raises TimeoutError at the end of the second."""
    futures = [ConcurrentFuture() for _ in range(N)]

    def gather_for_a_second() -> None:
        try:
            gather(futures, timeout=1.0)
        except TimeoutError:
            pass

    cpu = _cpu(gather_for_a_second)
    base = _cpu(lambda: cf.wait(futures, timeout=1.0))
    return Row(
        "CPU while gather() holds 10k pending futures for 1 s", cpu, "cf.wait", base,
        unit="s CPU", budget="well under 0.1 s", ok=cpu < 0.1,
    )


def run() -> list[Row]:
    return [
        gather_completed(),
        gather_100k_finished(),
        gather_iter_thread_pool(),
        progress_million_updates(),
        wait_cpu_on_pending(),
        async_wait_cpu_on_pending(),
        gather_cpu_on_pending(),
    ]
