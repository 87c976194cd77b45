"""Rate limits under contention: units granted over time against what the limit allows.

Several threads take one unit at a time from a single ``RateLimit`` as fast as they can, for a
few seconds, per algorithm. What the limit allows by time ``t`` (from the first grant):
- ``token_bucket`` starts full: ``capacity + rate * t``;
- ``sliding_window``: ``capacity`` in every window, so ``capacity * (floor(t / window) + 1)``.
Rows: units granted over the run against that allowance (ratio <= 1.0: never over; near 1.0:
the limit is used, not wasted). ``SERIES`` holds (t, granted, allowed) points for the chart.
"""

from __future__ import annotations

import math
import threading
import time

from common import Row
from concurry import LimitSet, RateLimit

TITLE = "Limits: units granted over time vs allowed (RateLimit, contending threads)"

ALGORITHMS = ("token_bucket", "sliding_window")
CAPACITY = 20
WINDOW = 0.5
THREADS = 4
SECONDS = 3.0
POINTS = 60
QUICK = {"SECONDS": 1.5, "POINTS": 30}

SERIES: dict = {}


def allowed(algorithm: str, t: float) -> float:
    if algorithm == "token_bucket":
        return CAPACITY + CAPACITY / WINDOW * t
    return CAPACITY * (math.floor(t / WINDOW) + 1)


def grants(algorithm: str) -> list[float]:
    """The monotonic times of every grant, ``THREADS`` threads contending for ``SECONDS``."""
    limit_set = LimitSet([RateLimit("units", CAPACITY, WINDOW, algorithm)])
    times: list[float] = []  # list.append is atomic: the threads share it
    stop_at = time.monotonic() + SECONDS
    request = {"units": 1}

    def take() -> None:
        while True:
            with limit_set.acquire(request, timeout=SECONDS + 1) as acquisition:
                if acquisition.granted_at >= stop_at:
                    return
                times.append(acquisition.granted_at)

    threads = [threading.Thread(target=take) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(times)


def run() -> list[Row]:
    rows = []
    for algorithm in ALGORITHMS:
        times = grants(algorithm)
        start = times[0]
        points = []
        done = 0
        for i in range(1, POINTS + 1):
            t = SECONDS * i / POINTS
            while done < len(times) and times[done] - start <= t:
                done += 1
            points.append([round(t, 4), done, allowed(algorithm, t)])
        SERIES[algorithm] = {"capacity": CAPACITY, "window": WINDOW, "threads": THREADS, "points": points}
        total, limit = len(times), allowed(algorithm, times[-1] - start)
        rows.append(
            Row(
                f"{algorithm}, {CAPACITY} per {WINDOW} s, {THREADS} threads, {SECONDS} s: units granted",
                total,
                "allowed by the limit",
                limit,
                unit="units",
                budget="<= 1.0x and >= 0.9x",
                ok=0.9 * limit <= total <= limit,
            )
        )
    return rows
