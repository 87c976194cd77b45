"""The grant rules of a ``LimitSet``, over a flat array of floats (its store's view).

One ``Ledger`` per set knows where each limit's state lives in the view and decides, with the
store's lock held, whether a request is granted. The same arithmetic runs over a Python list
(thread sets) and over shared memory (process sets). The rules:

- **All or nothing.** A request is granted only when every limit it touches can grant its
  amount at once, and then all of them take it. A waiter holds nothing while it waits, so two
  requests over overlapping keys can never deadlock each other.
- **First come, first served per key.** A waiter registers with a ticket; a request (new or
  waiting) is not granted while an older waiter needs one of the same limits. A large request
  therefore cannot be starved by a stream of small ones.
- **Holders are known.** A process-shared ledger records, per process, the resource units it
  holds, so the units of a process that died can be taken back.

View layout: ``[next ticket, waiter count, waiter high-water mark, reserved]``, then each
limit's state, then ``waiter_slots`` x (ticket, limit mask, pid, waiter id), then
``holder_slots`` x (pid, units held of each resource limit).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from .algorithms import ALGORITHMS
from .definitions import Limit, RateLimit, ResourceLimit

_HEADER = 4
_WAITER = 4  # floats per waiter slot
INF = math.inf


def process_alive(pid: int) -> bool:
    """Is process ``pid`` alive (a zombie, dead but not yet reaped, counts as dead)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): kill(0) said it exists


class Ledger:
    """Where each limit's state lives in the view, and the grant rules over it."""

    def __init__(self, limits: Sequence[Limit], waiter_slots: int, holder_slots: int = 0) -> None:
        self.limits = tuple(limits)
        if len(self.limits) > 52:
            raise ValueError(f"a LimitSet holds at most 52 limits, got {len(self.limits)}")
        self.offsets: list[int] = []
        self.rate: list[Any] = []  # the algorithm of each rate limit, None for resources
        self.capacity = [limit.capacity for limit in self.limits]
        self.resources = [i for i, limit in enumerate(self.limits) if isinstance(limit, ResourceLimit)]
        self._resource_column = {index: n for n, index in enumerate(self.resources)}
        offset = _HEADER
        for limit in self.limits:
            self.offsets.append(offset)
            if isinstance(limit, RateLimit):
                algorithm = ALGORITHMS[limit.algorithm](limit.capacity, limit.window)
                self.rate.append(algorithm)
                offset += algorithm.size
            else:
                self.rate.append(None)
                offset += 1  # units in use
        self.waiters_at = offset
        self.waiter_slots = waiter_slots
        self.holders_at = offset + waiter_slots * _WAITER
        self.holder_width = 1 + len(self.resources)
        self.holder_slots = holder_slots
        self.size = self.holders_at + holder_slots * self.holder_width

    def init(self, v, now: float) -> None:
        for i in range(self.size):
            v[i] = 0.0
        for i, algorithm in enumerate(self.rate):
            if algorithm is not None:
                algorithm.init(v, self.offsets[i], now)

    # ---- one attempt: grant all of it, or tell how long to wait ----

    def attempt(self, v, request: Sequence[tuple[int, float]], mask: int, ticket: float, now: float) -> float:
        """Grant ``request`` ((limit index, amount) pairs) and return 0.0, or take nothing and
        return the seconds to wait (``INF``: until something is released or a waiter leaves)."""
        if v[1] and self._older_waiter(v, mask, ticket):
            return INF
        longest = 0.0
        offsets, rate, capacity = self.offsets, self.rate, self.capacity
        for i, amount in request:
            algorithm = rate[i]
            if algorithm is None:
                if v[offsets[i]] + amount > capacity[i]:
                    return INF
            else:
                wait = algorithm.wait(v, offsets[i], now, amount)
                if wait > longest:
                    longest = wait
        if longest > 0.0:
            return longest
        for i, amount in request:
            algorithm = rate[i]
            if algorithm is None:
                v[offsets[i]] += amount
            else:
                algorithm.take(v, offsets[i], now, amount)
        return 0.0

    def _older_waiter(self, v, mask: int, ticket: float) -> bool:
        at, end = self.waiters_at, self.waiters_at + int(v[2]) * _WAITER
        while at < end:
            other = v[at]
            if other and (not ticket or other < ticket) and int(v[at + 1]) & mask:
                pid = int(v[at + 2])
                if pid and pid != os.getpid() and not process_alive(pid):
                    self._clear_waiter(v, at)  # a waiter whose process died holds no place
                else:
                    return True
            at += _WAITER
        return False

    def release(self, v, request: Sequence[tuple[int, float]]) -> None:
        """Give back the resource units of a grant."""
        offsets, rate = self.offsets, self.rate
        for i, amount in request:
            if rate[i] is None:
                v[offsets[i]] = max(0.0, v[offsets[i]] - amount)

    def adjust(self, v, i: int, delta: float, granted_at: float, now: float) -> None:
        self.rate[i].adjust(v, self.offsets[i], now, delta, granted_at)

    # ---- waiters ----

    def register(self, v, mask: int, pid: int, waiter_id: float) -> tuple[int, float]:
        """A slot and a ticket for a waiter (slot -1: the table is full; the waiter still waits,
        without a place in the queue)."""
        v[0] += 1
        ticket = v[0]
        at = self.waiters_at
        for slot in range(self.waiter_slots):
            if not v[at]:
                v[at], v[at + 1], v[at + 2], v[at + 3] = ticket, float(mask), float(pid), waiter_id
                v[1] += 1
                v[2] = max(v[2], slot + 1)
                return slot, ticket
            at += _WAITER
        return -1, 0.0

    def unregister(self, v, slot: int) -> None:
        if slot >= 0:
            self._clear_waiter(v, self.waiters_at + slot * _WAITER)

    def _clear_waiter(self, v, at: int) -> None:
        if v[at]:
            v[at] = v[at + 1] = v[at + 2] = v[at + 3] = 0.0
            v[1] -= 1
            if not v[1]:
                v[2] = 0.0

    def forget_waiters(self, v, ids: list[float]) -> None:
        """Take the waiters ``ids`` out of the queue (their process died)."""
        at = self.waiters_at
        for s in range(int(v[2])):
            w = at + s * _WAITER
            if v[w] and v[w + 3] in ids:
                self._clear_waiter(v, w)

    def waiter_ids(self, v) -> list[float]:
        """The ids of the waiters to wake after a change: those no older waiter holds back (the
        first in line for each of their limits). The others could not be granted anyway; each is
        woken when the one ahead of it leaves the queue. Waking only these keeps a release from
        waking every waiter."""
        at = self.waiters_at
        queued = []
        for s in range(int(v[2])):
            w = at + s * _WAITER
            if v[w]:
                queued.append((v[w], int(v[w + 1]), v[w + 3]))
        if len(queued) > 1:
            queued.sort()
        ids, ahead = [], 0  # ahead: the limits some older waiter needs
        for _ticket, mask, waiter_id in queued:
            if not mask & ahead:
                ids.append(waiter_id)
            ahead |= mask
        return ids

    # ---- holders (process-shared ledgers): who holds which resource units ----

    def holder_slot(self, v, pid: int) -> int:
        """This process's row of the holder table (claimed on first use)."""
        width, free = self.holder_width, -1
        for slot in range(self.holder_slots):
            at = self.holders_at + slot * width
            if v[at] == pid:
                return slot
            if free < 0 and not v[at]:
                free = slot
        if free < 0:
            self.reclaim_dead(v)
            return self.holder_slot(v, pid) if self._has_free_holder(v) else -1
        at = self.holders_at + free * width
        v[at] = float(pid)
        for n in range(1, width):
            v[at + n] = 0.0
        return free

    def _has_free_holder(self, v) -> bool:
        return any(not v[self.holders_at + s * self.holder_width] for s in range(self.holder_slots))

    def hold(self, v, slot: int, request: Sequence[tuple[int, float]], sign: float) -> None:
        """Record (sign=1) or forget (sign=-1) the resource units of a grant in a holder row."""
        if slot < 0:
            return
        at, column = self.holders_at + slot * self.holder_width, self._resource_column
        for i, amount in request:
            n = column.get(i)
            if n is not None:
                v[at + 1 + n] = max(0.0, v[at + 1 + n] + sign * amount)

    def reclaim_dead(self, v) -> bool:
        """Give back the resource units held by processes that died; True if any came back."""
        width, any_back = self.holder_width, False
        me = os.getpid()
        for slot in range(self.holder_slots):
            at = self.holders_at + slot * width
            pid = int(v[at])
            if pid and pid != me and not process_alive(pid):
                for n, i in enumerate(self.resources):
                    held = v[at + 1 + n]
                    if held:
                        v[self.offsets[i]] = max(0.0, v[self.offsets[i]] - held)
                        any_back = True
                    v[at + 1 + n] = 0.0
                v[at] = 0.0
        return any_back
