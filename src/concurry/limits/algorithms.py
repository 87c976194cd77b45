"""The rate-limiting algorithms, as arithmetic over a flat array of floats.

Each algorithm keeps its state in ``size`` consecutive floats of a view ``v`` starting at
offset ``o``. The view is a Python list for a thread-local set and a ``memoryview`` over shared
memory for a process-shared one: the same code enforces both. Every function is called with the
set's lock held and ``now`` from ``time.monotonic()`` (one clock for every process of a machine).

- ``wait(v, o, now, amount)``: seconds until ``amount`` units could be granted (0.0: now).
- ``take(v, o, now, amount)``: record the grant (called right after ``wait`` answered 0.0).
- ``adjust(v, o, now, delta, granted_at)``: the grant at ``granted_at`` really used ``delta``
  more units (or fewer, if negative). More may put the limit into debt that later requests wait
  out; fewer gives units back only where the algorithm can tell they were never used.
"""

from __future__ import annotations

import math
from typing import Any

from ..constants import RateLimitAlgorithm


class TokenBucket:
    """Holds up to ``capacity`` tokens, refilled at capacity/window per second; a request takes
    its amount. A burst of ``capacity`` is allowed, then the refill rate. State: tokens, time."""

    size = 2

    def __init__(self, capacity: float, window: float) -> None:
        self.capacity = capacity
        self.rate = capacity / window

    def init(self, v, o: int, now: float) -> None:
        v[o] = self.capacity
        v[o + 1] = now

    def _refill(self, v, o: int, now: float) -> float:
        tokens = v[o] + (now - v[o + 1]) * self.rate
        if tokens > self.capacity:
            tokens = self.capacity
        v[o] = tokens
        v[o + 1] = now
        return tokens

    def wait(self, v, o: int, now: float, amount: float) -> float:
        missing = amount - self._refill(v, o, now)
        return 0.0 if missing <= 0 else missing / self.rate

    def take(self, v, o: int, now: float, amount: float) -> None:
        v[o] -= amount

    def adjust(self, v, o: int, now: float, delta: float, granted_at: float) -> None:
        self._refill(v, o, now)
        v[o] = min(self.capacity, v[o] - delta)


class LeakyBucket:
    """No bursts: grants leave evenly spaced at the rate, each ``amount`` occupying
    amount/rate seconds of it. State: the time the next grant may leave.

    A grant that leaves late (a waiter wakes a little after its time) keeps the schedule as long
    as it is late by less than half a unit's interval: otherwise every wake-up latency would be
    lost throughput. So two grants are never closer than half an interval, and any span holds
    at most 1.5 units more than the rate allows."""

    size = 1

    def __init__(self, capacity: float, window: float) -> None:
        self.interval = window / capacity  # seconds per unit
        self.slack = self.interval / 2

    def init(self, v, o: int, now: float) -> None:
        v[o] = now

    def wait(self, v, o: int, now: float, amount: float) -> float:
        return max(0.0, v[o] - now)

    def take(self, v, o: int, now: float, amount: float) -> None:
        v[o] = max(v[o], now - self.slack) + amount * self.interval

    def adjust(self, v, o: int, now: float, delta: float, granted_at: float) -> None:
        v[o] = max(v[o] + delta * self.interval, now) if delta < 0 else v[o] + delta * self.interval


class GCRA:
    """The generic cell rate algorithm: a theoretical arrival time that each unit pushes on by
    window/capacity; a request is allowed while that stays within one window of now (a burst of
    ``capacity``, then the rate). State: the theoretical arrival time."""

    size = 1

    def __init__(self, capacity: float, window: float) -> None:
        self.interval = window / capacity
        self.window = window

    def init(self, v, o: int, now: float) -> None:
        v[o] = now

    def wait(self, v, o: int, now: float, amount: float) -> float:
        late = max(v[o], now) + amount * self.interval - self.window - now
        return late if late > 0 else 0.0

    def take(self, v, o: int, now: float, amount: float) -> None:
        v[o] = max(v[o], now) + amount * self.interval

    def adjust(self, v, o: int, now: float, delta: float, granted_at: float) -> None:
        v[o] = max(v[o], now) + delta * self.interval if delta > 0 else max(v[o] + delta * self.interval, now)


class FixedWindow:
    """``capacity`` units per window, windows aligned to multiples of ``window`` on the clock.
    Usage above capacity (from ``adjust``) is carried into the next windows. State: window
    start, units used in it."""

    size = 2

    def __init__(self, capacity: float, window: float) -> None:
        self.capacity = capacity
        self.window = window

    def init(self, v, o: int, now: float) -> None:
        v[o] = math.floor(now / self.window) * self.window
        v[o + 1] = 0.0

    def _roll(self, v, o: int, now: float) -> None:
        start = math.floor(now / self.window) * self.window
        if start > v[o]:
            windows = round((start - v[o]) / self.window)
            v[o + 1] = max(0.0, v[o + 1] - windows * self.capacity)  # debt outlives its window
            v[o] = start

    def wait(self, v, o: int, now: float, amount: float) -> float:
        self._roll(v, o, now)
        if v[o + 1] + amount <= self.capacity:
            return 0.0
        return max(v[o] + self.window - now, 1e-6)

    def take(self, v, o: int, now: float, amount: float) -> None:
        v[o + 1] += amount

    def adjust(self, v, o: int, now: float, delta: float, granted_at: float) -> None:
        self._roll(v, o, now)
        if delta > 0 or granted_at >= v[o]:  # a refund only counts in the window it was used in
            v[o + 1] = max(0.0, v[o + 1] + delta)


class SlidingWindow:
    """At most ``capacity`` units in every window of ``window`` seconds: a ring of (grant time,
    amount) entries and their sum. Up to 511 units of capacity every grant has its own entry
    (exact). Above that, grant times are rounded up to a step of window/511, and grants of one
    step share an entry: units then count for at most one step longer than they happened (never
    fewer), which costs at most 1/511 of the rate. If the ring still fills (fractional usage from
    ``update``), its two oldest entries merge into one at the later time, again only ever
    counting units for longer. State: head, count, sum, then the ring."""

    _HEADER = 3
    _MAX_SLOTS = 512

    def __init__(self, capacity: float, window: float) -> None:
        self.capacity = capacity
        self.window = window
        self.slots = max(2, min(int(capacity) + 1, self._MAX_SLOTS))
        # entries of whole units fit one per grant up to 511 units; above, group them in steps
        self.step = window / (self._MAX_SLOTS - 1) if capacity + 1 > self._MAX_SLOTS else 0.0
        self.size = self._HEADER + 2 * self.slots

    def _stamp(self, t: float) -> float:
        """The time an entry for a grant at ``t`` carries (``t`` rounded up to a step)."""
        return math.ceil(t / self.step) * self.step if self.step else t

    def init(self, v, o: int, now: float) -> None:
        for i in range(self.size):
            v[o + i] = 0.0

    def _expire(self, v, o: int, now: float) -> None:
        head, count, total = int(v[o]), int(v[o + 1]), v[o + 2]
        if not count:
            return
        oldest = now - self.window
        ring, slots = o + self._HEADER, self.slots
        while count and v[ring + 2 * head] <= oldest:
            total -= v[ring + 2 * head + 1]
            head = (head + 1) % slots
            count -= 1
        v[o], v[o + 1], v[o + 2] = head, count, total if count else 0.0

    def wait(self, v, o: int, now: float, amount: float) -> float:
        self._expire(v, o, now)
        excess = v[o + 2] + amount - self.capacity
        if excess <= 0:
            return 0.0
        head, count = int(v[o]), int(v[o + 1])
        ring, slots = o + self._HEADER, self.slots
        for i in range(count):  # the time enough of the oldest entries have left the window
            at = ring + 2 * ((head + i) % slots)
            excess -= v[at + 1]
            if excess <= 0:
                return max(v[at] + self.window - now, 1e-6)
        return self.window  # only reached through debt: check again a window later

    def take(self, v, o: int, now: float, amount: float) -> None:
        if amount > 0:
            self._append(v, o, now, amount)

    def _append(self, v, o: int, at_time: float, amount: float) -> None:
        head, count = int(v[o]), int(v[o + 1])
        ring, slots = o + self._HEADER, self.slots
        at_time = self._stamp(at_time)
        if count:
            newest = ring + 2 * ((head + count - 1) % slots)
            if v[newest] >= at_time:  # the same step (or a time an adjust already moved on)
                v[newest + 1] += amount
                v[o + 2] += amount
                return
        if count == slots:  # merge the two oldest into the second (later) one
            second = ring + 2 * ((head + 1) % slots)
            v[second + 1] += v[ring + 2 * head + 1]
            head = (head + 1) % slots
            count -= 1
        at = ring + 2 * ((head + count) % slots)
        v[at], v[at + 1] = at_time, amount
        v[o], v[o + 1], v[o + 2] = head, count + 1, v[o + 2] + amount

    def adjust(self, v, o: int, now: float, delta: float, granted_at: float) -> None:
        self._expire(v, o, now)
        if delta > 0:
            self._append(v, o, max(now, self._newest(v, o)), delta)
            return
        head, count = int(v[o]), int(v[o + 1])
        ring, slots = o + self._HEADER, self.slots
        stamp = self._stamp(granted_at)
        for i in range(count - 1, -1, -1):  # the grant's own entry, if it is still there unmerged
            at = ring + 2 * ((head + i) % slots)
            if v[at] == stamp:
                refund = min(-delta, v[at + 1])
                v[at + 1] -= refund
                v[o + 2] -= refund
                return

    def _newest(self, v, o: int) -> float:
        count = int(v[o + 1])
        if not count:
            return 0.0
        return v[o + self._HEADER + 2 * ((int(v[o]) + count - 1) % self.slots)]


ALGORITHMS: dict[RateLimitAlgorithm, Any] = {
    RateLimitAlgorithm.TOKEN_BUCKET: TokenBucket,
    RateLimitAlgorithm.LEAKY_BUCKET: LeakyBucket,
    RateLimitAlgorithm.GCRA: GCRA,
    RateLimitAlgorithm.FIXED_WINDOW: FixedWindow,
    RateLimitAlgorithm.SLIDING_WINDOW: SlidingWindow,
}
