"""Load balancing: which worker of a pool gets the next call.

Each algorithm is a small object with one method, ``pick() -> int``, reading the per-worker
counters the pool keeps (``pending``: calls assigned and not finished, including those waiting
in the library's queue; ``total``: calls ever assigned). ``pick`` runs in the caller's thread on
every call, so it reads the counters without locking: a slightly stale count only makes one
choice slightly less than ideal, never wrong.

On-demand pools use ``pick_from(free)`` instead: which of the worker positions free now gets
the new worker (a call waits only when every position is busy, then takes the first to free).
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Sequence
from typing import Protocol

from .constants import LoadBalancingAlgorithm


class Counters(Protocol):
    """What an algorithm may read about one worker."""

    pending: int
    total: int


class Balancer:
    """Base: picks the index of a worker among ``workers`` (a list the pool owns)."""

    algorithm: LoadBalancingAlgorithm

    def __init__(self, workers: Sequence[Counters]):
        self.workers = workers
        self.size = len(workers)
        self._turn = itertools.count().__next__  # atomic under the GIL

    def pick(self) -> int:
        raise NotImplementedError

    def pick_from(self, free: Sequence[int]) -> int:
        """The index this algorithm picks among ``free`` (indices, ascending, not empty)."""
        raise NotImplementedError

    def _in_turn(self, free: Sequence[int]) -> list[int]:
        """``free`` rotated to start at the next turn's index: the order ties are broken in."""
        split = bisect.bisect_left(free, self._turn() % len(self.workers))
        return [*free[split:], *free[:split]]


class RoundRobin(Balancer):
    """Each worker in turn: 0, 1, ..., n-1, 0, ..."""

    algorithm = LoadBalancingAlgorithm.ROUND_ROBIN

    def pick(self) -> int:
        return self._turn() % self.size

    def pick_from(self, free: Sequence[int]) -> int:
        """The next index in turn, skipping the busy ones."""
        return self._in_turn(free)[0]


class _Least(Balancer):
    """The worker with the smallest counter; ties go round the workers in turn, so idle
    workers share the load instead of the first one taking everything."""

    field = "pending"

    def pick(self) -> int:
        workers, size, field = self.workers, self.size, self.field
        best = self._turn() % size
        lowest = getattr(workers[best], field)
        if lowest == 0:
            return best
        for step in range(1, size):
            index = (best + step) % size
            value = getattr(workers[index], field)
            if value < lowest:
                best, lowest = index, value
                if value == 0:
                    break
        return best

    def pick_from(self, free: Sequence[int]) -> int:
        workers, field = self.workers, self.field
        return min(self._in_turn(free), key=lambda index: getattr(workers[index], field))


class LeastActive(_Least):
    """The worker with the fewest unfinished calls (running, queued in its backend, or waiting
    in the library's queue for a backend slot)."""

    algorithm = LoadBalancingAlgorithm.ACTIVE
    field = "pending"

    def pick(self) -> int:
        # ``_Least.pick`` with the counter read inline: this runs on every call of the pool.
        workers, size = self.workers, self.size
        best = self._turn() % size
        lowest = workers[best].pending
        if lowest == 0:
            return best
        index = best
        for _ in range(size - 1):
            index += 1
            if index == size:
                index = 0
            value = workers[index].pending
            if value < lowest:
                best, lowest = index, value
                if value == 0:
                    break
        return best


class LeastTotal(_Least):
    """The worker that has been assigned the fewest calls so far."""

    algorithm = LoadBalancingAlgorithm.TOTAL
    field = "total"


class Random(Balancer):
    """A worker chosen uniformly at random."""

    algorithm = LoadBalancingAlgorithm.RANDOM

    def __init__(self, workers: Sequence[Counters]):
        super().__init__(workers)
        self._randrange = random.Random().randrange

    def pick(self) -> int:
        return self._randrange(self.size)

    def pick_from(self, free: Sequence[int]) -> int:
        return free[self._randrange(len(free))]


BALANCERS: dict[LoadBalancingAlgorithm, type[Balancer]] = {
    cls.algorithm: cls for cls in (RoundRobin, LeastActive, LeastTotal, Random)
}


def make_balancer(algorithm: LoadBalancingAlgorithm | str, workers: Sequence[Counters]) -> Balancer:
    """The balancer for ``algorithm`` (a member or any accepted spelling) over ``workers``."""
    return BALANCERS[LoadBalancingAlgorithm.parse(algorithm, "load_balancing")](workers)
