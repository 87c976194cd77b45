"""Accuracy checks over recorded grants ((granted_at, units) pairs), shared by the thread and the
process limit tests: the limit's bound over every window, and the long-run throughput."""

from __future__ import annotations

import math

EPS = 1e-9


def check_bound(algorithm: str, capacity: float, window: float, grants: list[tuple[float, float]]) -> None:
    """Granted units never exceed what ``algorithm`` allows over any interval."""
    grants = sorted(grants)
    times = [t for t, _ in grants]
    if algorithm == "sliding_window":  # every window (t - window, t] holds at most capacity
        lo, total = 0, 0.0
        for t, units in grants:
            total += units
            while times[lo] <= t - window:
                total -= grants[lo][1]
                lo += 1
            assert total <= capacity + EPS, f"{total} units in the window ending at {t}"
    elif algorithm == "fixed_window":  # each aligned window holds at most capacity
        per_window: dict[int, float] = {}
        for t, units in grants:
            w = math.floor(t / window)
            per_window[w] = per_window.get(w, 0.0) + units
        assert max(per_window.values()) <= capacity + EPS, per_window
    else:  # buckets: units in [t_i, t_j] <= burst + rate * (t_j - t_i)
        rate = capacity / window
        # leaky_bucket: no burst, but a late grant keeps the schedule (half a unit of slack)
        burst = 1.5 if algorithm == "leaky_bucket" else capacity
        best, before = -math.inf, 0.0  # max over i of (rate * t_i - units before i)
        for t, units in grants:
            best = max(best, rate * t - before)
            before += units
            assert before - rate * t + best <= burst + 1e-6, f"more than {burst} + refill by {t}"


def throughput(algorithm: str, capacity: float, window: float, grants: list[tuple[float, float]], end: float):
    """(units granted, units the algorithm allows) from the first grant up to ``end``, over a span
    the algorithm's shape makes exact: whole windows for the window algorithms."""
    t0 = min(t for t, _ in grants)
    rate = capacity / window
    if algorithm == "fixed_window":
        first = math.floor(t0 / window) + 1  # the first whole aligned window
        last = math.floor(end / window)  # windows [first, last) are whole
        got = sum(u for t, u in grants if first <= math.floor(t / window) < last)
        return got, capacity * (last - first)
    if algorithm == "sliding_window":
        k = math.floor((end - t0) / window)
        got = sum(u for t, u in grants if t < t0 + k * window)
        return got, capacity * k
    got = sum(u for t, u in grants if t <= end)
    burst = 1.5 if algorithm == "leaky_bucket" else capacity
    return got, burst + rate * (end - t0)
