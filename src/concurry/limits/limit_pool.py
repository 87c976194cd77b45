"""``LimitPool``: acquisitions spread over independent ``LimitSet``s (per-region or per-API-key
quotas). Each acquisition comes from one set; its ``config`` tells which."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Mapping

from ..constants import LoadBalancingAlgorithm
from .limit_set import Acquisition, LimitSet

_ALGORITHMS = (LoadBalancingAlgorithm.ROUND_ROBIN, LoadBalancingAlgorithm.RANDOM)


class LimitPool:
    """Several ``LimitSet``s used as one: each ``acquire`` picks a set (``round_robin`` or
    ``random``) and waits on it; ``try_acquire`` tries every set once, starting at the pick."""

    def __init__(
        self,
        limit_sets: Iterable[LimitSet],
        load_balancing: LoadBalancingAlgorithm | str = LoadBalancingAlgorithm.ROUND_ROBIN,
    ) -> None:
        sets = list(limit_sets)
        if not sets or not all(isinstance(s, LimitSet) for s in sets):
            raise TypeError(
                f"LimitPool limit_sets must be a non-empty list of LimitSet objects, got {sets!r}"
            )
        balancing = LoadBalancingAlgorithm.parse(load_balancing, "LimitPool load_balancing")
        if balancing not in _ALGORITHMS:
            raise ValueError(
                f"LimitPool load_balancing={load_balancing!r} is not accepted; use 'round_robin' or 'random'"
            )
        modes = {(s.shared, s.mode) for s in sets}
        if len(modes) > 1:
            raise ValueError(
                f"LimitPool limit_sets must all have the same shared= and mode=, got {sorted(modes)}"
            )
        self.limit_sets: tuple[LimitSet, ...] = tuple(sets)
        self.load_balancing = balancing
        self._counter = itertools.count()

    @property
    def shared(self) -> bool:
        return self.limit_sets[0].shared

    @property
    def mode(self) -> str:
        return self.limit_sets[0].mode

    def _pick(self) -> int:
        if self.load_balancing is LoadBalancingAlgorithm.RANDOM:
            return random.randrange(len(self.limit_sets))
        return next(self._counter) % len(self.limit_sets)

    def acquire(
        self, requested: Mapping[str, int] | None = None, timeout: float | None = None
    ) -> Acquisition:
        return self.limit_sets[self._pick()].acquire(requested, timeout)

    def try_acquire(self, requested: Mapping[str, int] | None = None) -> Acquisition:
        start, n = self._pick(), len(self.limit_sets)
        for k in range(n):
            acquisition = self.limit_sets[(start + k) % n].try_acquire(requested)
            if acquisition.successful:
                return acquisition
        return acquisition

    async def async_acquire(
        self, requested: Mapping[str, int] | None = None, timeout: float | None = None
    ) -> Acquisition:
        return await self.limit_sets[self._pick()].async_acquire(requested, timeout)

    def private_copy(self) -> LimitPool:
        """The same pool with private sets copied fresh (what a worker gets)."""
        sets = [s if s.shared else s.private_copy() for s in self.limit_sets]
        return LimitPool(sets, self.load_balancing)

    def __reduce__(self) -> tuple:
        return (LimitPool, (self.limit_sets, self.load_balancing))

    def __len__(self) -> int:
        return len(self.limit_sets)

    def __getitem__(self, index: int) -> LimitSet:
        return self.limit_sets[index]

    def __repr__(self) -> str:
        return f"LimitPool({list(self.limit_sets)!r}, load_balancing={self.load_balancing.value!r})"
