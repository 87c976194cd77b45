"""A worker that dies is seen at once (SPEC §3, §4): a single worker's ``repr`` says crashed,
and a pool replaces a dead worker as soon as its death is noticed, without waiting for a call
to be routed to it."""

from __future__ import annotations

import os
import signal

import pytest

from concurry import worker
from conftest import child_pids, process_alive, wait_until


@worker
class Pid:
    def pid(self) -> int:
        return os.getpid()


@pytest.mark.timeout(60)
def test_a_killed_single_worker_says_crashed():
    w = Pid.options(mode="process").init()
    try:
        pid = w.pid().result(timeout=30)
        assert "running" in repr(w)
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: "crashed" in repr(w), 5), repr(w)
    finally:
        w.stop()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("algorithm", ["round_robin", "active", "total", "random"])
def test_an_idle_pool_worker_killed_is_replaced_without_any_call(algorithm):
    children = child_pids()
    with Pid.options(mode="process", max_workers=2, load_balancing=algorithm).init() as pool:
        before = set()
        assert wait_until(lambda: before.add(pool.pid().result(timeout=30)) or len(before) == 2, 30)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        # no call is sent: the pool notices the death by itself and starts a replacement
        assert wait_until(lambda: [w["restarts"] for w in pool.pool_stats()["workers"]].count(1) == 1, 10)
        assert wait_until(lambda: [w["state"] for w in pool.pool_stats()["workers"]] == ["running"] * 2, 10)
        assert not process_alive(victim)
        after = set()
        assert wait_until(lambda: after.add(pool.pid().result(timeout=30)) or len(after) == 2, 30)
        assert victim not in after and len(after - before) == 1  # calls reach the new worker too
        assert len(child_pids() - children) == 2
    assert wait_until(lambda: not (child_pids() - children))
