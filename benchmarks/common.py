"""Timing helpers shared by the benchmark scripts.

Every row times our path and a baseline in the same run and reports the ratio; absolute
figures are for orientation only (the machine is noisy). Best-of-N keeps noise out.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

# Set by ``run.py --quick``: ``best_of`` runs once (a fast, noisier look, for docs built without a
# results file).
QUICK = False


@dataclass
class Row:
    """One benchmark row: our figure, the baseline's, and the budget it is judged against."""

    name: str
    ours: float  # seconds per unit
    baseline_name: str = ""
    baseline: float | None = None
    unit: str = "us/call"
    budget: str = ""
    ok: bool | None = None

    @property
    def ratio(self) -> float | None:
        return None if not self.baseline else self.ours / self.baseline

    def to_dict(self) -> dict:
        """Every field plus the ratio, for the results JSON."""
        return {**asdict(self), "ratio": self.ratio}


def best_of(fn: Callable[[], float], repeat: int = 5) -> float:
    """Run ``fn`` (which returns seconds per unit) ``repeat`` times; keep the best."""
    results = []
    for _ in range(1 if QUICK else repeat):
        gc.collect()
        results.append(fn())
    return min(results)


def timed(fn: Callable[[], object], units: int) -> float:
    """Seconds per unit for one run of ``fn`` doing ``units`` units of work."""
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) / units


class Noop:
    def noop(self) -> None:
        return None


def thread_worker_calls(calls: int, **options) -> float:
    """Seconds per call of a thread worker (``options`` on top) doing ``calls`` no-op calls,
    then waiting for all of them; best of 3 runs, the worker started and warmed first."""
    from concurry import worker

    w = worker(Noop).options(mode="thread", **options).init()
    call = w.noop
    call().result()

    def body() -> None:
        for f in [call() for _ in range(calls)]:
            f.result()

    try:
        return best_of(lambda: timed(body, calls), repeat=3)
    finally:
        w.stop()


def scale(seconds: float, unit: str) -> str:
    if unit == "units":  # a count, not a time
        return f"{seconds:,.0f}"
    if unit.startswith("us"):
        return f"{seconds * 1e6:,.1f}"
    if unit.startswith("ms"):
        return f"{seconds * 1e3:,.1f}"
    return f"{seconds:,.3f}"


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n## {title}\n")
    print("| benchmark | concurry | baseline | ratio | budget | met |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        base = f"{scale(r.baseline, r.unit)} {r.unit} ({r.baseline_name})" if r.baseline else "—"
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "—"
        met = "—" if r.ok is None else ("yes" if r.ok else "NO")
        print(f"| {r.name} | {scale(r.ours, r.unit)} {r.unit} | {base} | {ratio} | {r.budget} | {met} |")
