"""A CallLimit costs little per call, and a worker without limits pays nothing for them.

Rows (thread mode, 10k no-op calls then wait all; the two sides alternate, best of 3 rounds):
- ``limits=[]`` given explicitly vs a worker with no limits option: the same (within noise)
- a ``CallLimit`` too large to ever refuse vs no limits: <= 2 us more per call
"""

from __future__ import annotations

from common import Row, best_of, timed
from concurry import CallLimit, worker

TITLE = "Limits: per-call cost of a worker's CallLimit (thread)"

CALLS = 10_000


class Noop:
    def noop(self) -> None:
        return None


def _measure(**options) -> float:
    w = worker(Noop).options(mode="thread", **options).init()
    call = w.noop
    call().result()

    def body() -> None:
        for f in [call() for _ in range(CALLS)]:
            f.result()

    try:
        return best_of(lambda: timed(body, CALLS), repeat=3)
    finally:
        w.stop()


def _alternate(a: dict, b: dict, rounds: int = 3) -> tuple[float, float]:
    first, second = [], []
    for _ in range(rounds):
        first.append(_measure(**a))
        second.append(_measure(**b))
    return min(first), min(second)


def run() -> list[Row]:
    empty, plain = _alternate({"limits": []}, {})
    limited, plain_again = _alternate({"limits": [CallLimit(capacity=10**12, window=1)]}, {})
    return [
        Row(
            f"limits=[], {CALLS:,} calls then wait all",
            empty,
            "no limits option",
            plain,
            budget="<= 1.1x (same within noise)",
            ok=empty <= 1.1 * plain,
        ),
        Row(
            f"CallLimit never refusing (+{(limited - plain_again) * 1e6:.2f} us)",
            limited,
            "no limits option",
            plain_again,
            budget="<= 2 us more",
            ok=limited - plain_again <= 2e-6,
        ),
    ]
