"""Retries cost nothing when unused and little when the first attempt succeeds.

Rows (thread mode, 10k no-op calls then wait all; the two sides alternate, best of 3 rounds):
- ``num_retries=0`` given explicitly vs a worker with no retry options: the same (within noise)
- ``num_retries=3``, every call succeeding at once, vs ``num_retries=0``: <= 1 us more per call
"""

from __future__ import annotations

from common import Row, thread_worker_calls

TITLE = "Retries: per-call cost when unused and when the first attempt succeeds (thread)"

CALLS = 10_000


def _alternate(a: dict, b: dict, rounds: int = 3) -> tuple[float, float]:
    first, second = [], []
    for _ in range(rounds):
        first.append(thread_worker_calls(CALLS, **a))
        second.append(thread_worker_calls(CALLS, **b))
    return min(first), min(second)


def run() -> list[Row]:
    zero, plain = _alternate({"num_retries": 0}, {})
    three, zero_again = _alternate({"num_retries": 3, "retry_wait": 0.01}, {"num_retries": 0})
    return [
        Row(
            f"num_retries=0, {CALLS:,} calls then wait all", zero, "no retry options", plain,
            budget="<= 1.1x (same within noise)", ok=zero <= 1.1 * plain,
        ),
        Row(
            f"num_retries=3, first attempt succeeds (+{(three - zero_again) * 1e6:.2f} us)", three,
            "num_retries=0", zero_again, budget="<= 1 us more", ok=three - zero_again <= 1e-6,
        ),
    ]
