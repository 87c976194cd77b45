"""``python -m concurry``: a short tour on this machine.

1. The same worker class running in every available mode.
2. A pool spreading calls over its workers, with a live progress bar.
3. Shared limits: a pool whose workers share a few "connections" and a request rate.
4. A table of per-call overhead measured here, next to ``concurrent.futures``.

Modes are detected at run time, so the tour grows as backends land. It finishes in seconds, plus
a few for starting a local Ray (bound to 127.0.0.1) when Ray is installed; that Ray is shut down at
the end.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import platform
import sys
import threading
import time
from typing import Any

import concurry
from concurry import ExecutionMode, RateLimit, ResourceLimit, gather, worker

BATCH_CALLS = 2_000
ROUND_TRIPS = 200
POOL_SIZE = 4
POOL_CALLS = 40
LIMIT_CALLS = 30
LIMIT_RATE = 20  # requests per second: a burst of 20, then 20 per second
LIMIT_CONNECTIONS = 2


@worker
class Greeter:
    """The tour's worker: a little state, and a report of where each call ran."""

    def __init__(self, greeting: str = "hello"):
        self.greeting = greeting
        self.calls = 0

    def greet(self, name: str) -> str:
        self.calls += 1
        return f"{self.greeting}, {name} (call {self.calls})"

    def where(self) -> str:
        return f"pid {os.getpid()}, thread {threading.current_thread().name}"

    def work(self, x: int) -> str:
        time.sleep(0.02)  # pretend to do I/O
        return threading.current_thread().name if os.getpid() == _PARENT else f"pid {os.getpid()}"

    def noop(self) -> None:
        return None


_PARENT = os.getpid()


@worker
class Client:
    """The tour's limited worker: each call holds a connection and spends one request."""

    def query(self, i: int) -> tuple[float, float]:
        # a ResourceLimit not named in ``requested`` is taken with 1 unit: one connection
        with self.limits.acquire(requested={"requests": 1}):
            start = time.monotonic()
            time.sleep(0.01)  # pretend to wait for a server
            return start, time.monotonic()


def _noop() -> None:
    return None


def available_modes() -> dict[str, str | None]:
    """Each mode -> ``None`` if it can run here, else why not (for Ray: how to install it)."""
    from concurry.backends import backend_class

    # Read by Ray when it is imported (below, if installed): a local Ray then binds 127.0.0.1 only.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    modes: dict[str, str | None] = {}
    for mode in ExecutionMode:
        try:
            backend_class(mode)
        except (ImportError, ValueError) as exc:
            modes[mode.value] = str(exc).split(";")[0]
            continue
        modes[mode.value] = None
    return modes


def start_ray(modes: dict[str, str | None]) -> bool:
    """Start Ray as the library does on a ray worker's first start (or join ``RAY_ADDRESS``'s),
    saying so first: it takes a few seconds. True if the tour must shut it down at the end."""
    if modes.get(ExecutionMode.RAY.value) is not None:
        return False
    import ray

    from concurry.backends.ray_future import ensure_ray

    if ray.is_initialized():
        return False
    print("\nStarting Ray for mode 'ray' (a few seconds) ...", flush=True)
    start = time.perf_counter()
    try:
        ensure_ray()
    except Exception as exc:  # the rest of the tour runs without it
        modes[ExecutionMode.RAY.value] = f"Ray did not start: {exc}"
        print(f"Ray did not start: {exc}", flush=True)
        stop_ray()  # whatever part of it did start
        return False
    print(f"Ray started in {time.perf_counter() - start:.1f} s.", flush=True)
    return True


def stop_ray() -> None:
    import ray

    ray.shutdown()  # ends the local Ray's processes it started


def section(title: str) -> None:
    print(f"\n{title}\n{'-' * len(title)}", flush=True)


def tour_modes(modes: dict[str, str | None]) -> None:
    section("1. One worker class, every mode")
    print(f"{'mode':<9} {'result':<34} ran in", flush=True)
    for mode, missing in modes.items():
        if missing:
            print(f"{mode:<9} {'-':<34} not available: {missing}", flush=True)
            continue
        with Greeter.options(mode=mode).init("hi") as g:
            g.greet("Ada")
            result, where = gather([g.greet("Bob"), g.where()], timeout=60)
        print(f"{mode:<9} {result!r:<34} {where}", flush=True)


def tour_pool(modes: dict[str, str | None]) -> None:
    section(f"2. A pool of {POOL_SIZE} thread workers, {POOL_CALLS} calls, with a progress bar")
    pool = Greeter.options(mode="thread", max_workers=POOL_SIZE).init()
    futures = [pool.work(i) for i in range(POOL_CALLS)]
    start = time.perf_counter()
    names = gather(futures, progress={"desc": "pool", "unit": "call", "file": sys.stdout}, timeout=60)
    elapsed = time.perf_counter() - start
    pool.stop()
    print(
        f"{POOL_CALLS} calls of 20 ms ran on {len(set(names))} workers in {elapsed:.2f} s "
        f"({POOL_CALLS * 0.02:.1f} s one after another)",
        flush=True,
    )


def tour_limits(modes: dict[str, str | None]) -> None:
    section(
        f"3. Shared limits: {POOL_SIZE} workers, {LIMIT_CONNECTIONS} connections, "
        f"{LIMIT_RATE} requests/s"
    )
    limits = [RateLimit("requests", LIMIT_RATE, 1.0), ResourceLimit("connections", LIMIT_CONNECTIONS)]
    start = time.monotonic()
    with Client.options(mode="thread", max_workers=POOL_SIZE, limits=limits).init() as pool:
        spans = gather([pool.query(i) for i in range(LIMIT_CALLS)], timeout=60)
    edges = sorted([(t0, 1) for t0, _ in spans] + [(t1, -1) for _, t1 in spans], key=lambda e: (e[0], e[1]))
    busy = peak = 0
    for _, step in edges:
        busy += step
        peak = max(peak, busy)
    late = sum(1 for t0, _ in spans if t0 - start >= 0.25)
    print(
        f"{LIMIT_CALLS} calls: at most {peak} ran at once (the connections); "
        f"{LIMIT_CALLS - late} started in the first 0.25 s (the burst of {LIMIT_RATE} requests), "
        f"{late} waited for the rate to refill",
        flush=True,
    )


def _batch(submit: Any, n: int) -> float:
    start = time.perf_counter()
    futures = [submit() for _ in range(n)]
    cf.wait(futures, timeout=120) if isinstance(futures[0], cf.Future) else gather(futures, timeout=120)
    return (time.perf_counter() - start) / n


def _round_trips(submit: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        submit().result(timeout=60)
    return (time.perf_counter() - start) / n


def measure(submit: Any, calls: int) -> tuple[float, float]:
    _batch(submit, min(200, calls))  # warm up
    return _batch(submit, calls), _round_trips(submit, ROUND_TRIPS)


def tour_overhead(modes: dict[str, str | None]) -> None:
    section("4. Per-call overhead on this machine")
    print(f"| {'what':<34} | {f'{BATCH_CALLS:,} calls, then wait':>24} | {'one call, then wait':>21} |")
    print(f"|{'-' * 36}|{'-' * 25}:|{'-' * 22}:|", flush=True)

    def row(name: str, figures: tuple[float, float]) -> None:
        batch, trip = figures
        print(f"| {name:<34} | {batch * 1e6:>16,.1f} us/call | {trip * 1e6:>13,.1f} us/call |", flush=True)

    for mode, missing in modes.items():
        if missing:
            continue
        calls = BATCH_CALLS // 2 if mode == "process" else BATCH_CALLS
        with Greeter.options(mode=mode).init() as g:
            row(f"concurry mode={mode!r}", measure(g.noop, calls))
    with cf.ThreadPoolExecutor(1) as ex:
        row("concurrent.futures ThreadPool(1)", measure(lambda: ex.submit(_noop), BATCH_CALLS))
    with cf.ProcessPoolExecutor(1) as ex:
        row("concurrent.futures ProcessPool(1)", measure(lambda: ex.submit(_noop), BATCH_CALLS // 2))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``--help`` prints what the tour does; any other argument is refused with a clear error."""
    parser = argparse.ArgumentParser(
        prog="python -m concurry",
        description=(
            "A short tour of concurry on this machine: the same worker class in every available "
            "mode, a pool of thread workers with a progress bar, a pool sharing limits, and the "
            "per-call overhead measured here next to concurrent.futures. Takes a few seconds (a few "
            "more when Ray is installed: a local Ray is started for mode 'ray', and shut down at the "
            "end); takes no arguments."
        ),
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    parse_args(argv)
    start = time.perf_counter()
    print(
        f"concurry {concurry.__version__} tour - Python {platform.python_version()} on "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        flush=True,
    )
    modes = available_modes()
    started_ray = start_ray(modes)
    try:
        tour_modes(modes)
        tour_pool(modes)
        tour_limits(modes)
        tour_overhead(modes)
    finally:
        if started_ray:
            stop_ray()
    print(f"\nTour finished in {time.perf_counter() - start:.1f} s.", flush=True)


if __name__ == "__main__":
    main()
