"""``load_balancing="active"`` (SPEC §4): no call waits behind a running call while another
worker of the pool is idle, in thread and process pools; the statistics stay right."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from concurry import worker
from conftest import wait_until


@worker
class Sleeper:
    """``who()`` names the worker a call ran on (process id, thread id)."""

    def who(self) -> tuple[int, int]:
        return os.getpid(), threading.get_ident()

    def hold(self, path: str) -> tuple[int, int]:
        """A long call: runs until ``path`` exists (a gate that works across processes)."""
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.005)
        return self.who()

    def nap(self, seconds: float) -> tuple[int, int]:
        time.sleep(seconds)
        return self.who()

    def echo(self, value: int) -> int:
        return value


@pytest.mark.timeout(60)
@pytest.mark.parametrize("short_calls", [6, 12])
def test_active_never_queues_short_calls_behind_a_long_one(pool_mode, tmp_path, short_calls):
    """One worker of 3 is busy with a long call; short calls submitted at once all run on the
    other two and all finish while the long call still runs (it ends only after them)."""
    gate = str(tmp_path / "release")
    with Sleeper.options(mode=pool_mode, max_workers=3, load_balancing="active").init() as pool:
        long_call = pool.hold(gate)
        shorts = [pool.nap(0.02) for _ in range(short_calls)]
        try:
            ran_on = [f.result(timeout=20) for f in shorts]  # would time out behind the long call
            assert not long_call.done()
        finally:
            open(gate, "w").close()
        busy = long_call.result(timeout=30)
    assert busy not in ran_on
    assert len(set(ran_on)) == 2


@pytest.mark.timeout(60)
def test_active_statistics_stay_right_when_calls_move(pool_mode, tmp_path):
    """Calls taken back from a busy worker and run elsewhere are counted once, on the worker
    that ran them; ``unfinished`` counts only the long call once the short ones are done."""
    gate = str(tmp_path / "release")
    with Sleeper.options(mode=pool_mode, max_workers=3, load_balancing="active").init() as pool:
        long_call = pool.hold(gate)
        shorts = [pool.nap(0.02) for _ in range(9)]
        try:
            ran_on = [f.result(timeout=20) for f in shorts]
            assert wait_until(lambda: pool.pool_stats()["unfinished"] == 1)
            stats = pool.pool_stats()
        finally:
            open(gate, "w").close()
        busy = long_call.result(timeout=30)
        assert wait_until(lambda: pool.pool_stats()["unfinished"] == 0)
        final = pool.pool_stats()
    assert stats["total"] == 10 and final["total"] == 10
    assert sum(w["total"] for w in final["workers"]) == 10
    assert [w["unfinished"] for w in stats["workers"]].count(1) == 1  # only the long call's worker
    # per worker: the totals are the calls each one ran (the long worker ran the long call only)
    runs = sorted([ran_on.count(w) for w in set(ran_on)] + [1 + ran_on.count(busy)])
    assert sorted(w["total"] for w in final["workers"]) == runs


@pytest.mark.timeout(60)
def test_active_keeps_every_call_with_a_burst_and_cancellations(pool_mode, caplog):
    """A burst with cancellations: every future ends, results are right, counts add up, and
    calls moving between workers log nothing (no future is ever started twice)."""
    with Sleeper.options(mode=pool_mode, max_workers=4, load_balancing="active").init() as pool:
        futures = [pool.nap(0.0005 * (i % 5)) for i in range(400)]
        cancelled = sum(f.cancel() for f in futures[200::7])
        for f in futures:
            if not f.cancelled():
                assert len(f.result(timeout=30)) == 2
        assert wait_until(lambda: pool.pool_stats()["unfinished"] == 0)
        stats = pool.pool_stats()
    assert stats["total"] == 400
    assert sum(f.cancelled() for f in futures) == cancelled
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.timeout(90)
def test_active_process_pool_delivers_every_result_over_many_bursts():
    """Bursts of quick calls keep an active process pool taking calls back and handing them on
    for seconds on end: every call still returns its own result. (Two races lost calls here: a
    worker's dispatcher could wait for a call that had been moved into its own queue, so the pool
    stalled; and taking calls back while the reader was between two steps made the child skip
    calls the parent still counted as its own, which then ended cancelled.)"""
    pool = Sleeper.options(mode="process", max_workers=2, load_balancing="active").init()
    try:
        rounds = 0
        end = time.monotonic() + 8
        while time.monotonic() < end:
            futures = [pool.echo(i) for i in range(1000)]
            # a stall fails here as a timeout, a lost call as CancelledError
            assert [f.result(timeout=20) for f in futures] == list(range(1000))
            rounds += 1
        assert rounds > 0
        stats = pool.pool_stats()
        assert stats["total"] == 1000 * rounds
        assert stats["unfinished"] == 0
    finally:
        pool.stop(timeout=5, cancel_futures=True)
