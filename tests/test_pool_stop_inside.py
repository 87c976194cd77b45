"""``stop()`` called where the library runs user code (SPEC §2.4, §4): in a done callback, or in
a method of the pool being stopped. It returns promptly, the triggering call completes, and
the rest of the stop finishes in the background: no future left pending, no thread or
process left."""

from __future__ import annotations

import os
import threading
import time

import pytest

from concurry import worker
from conftest import child_pids, concurry_threads, wait_until


@worker
class Stopper:
    def nap(self, seconds: float) -> int:
        time.sleep(seconds)
        return os.getpid()

    def stop_pool(self, pool, seconds: float = 0.0) -> str:
        """Stop the pool this very call runs in (thread mode: the handle is shared memory)."""
        pool.stop()
        time.sleep(seconds)
        return "stopped from inside"


def _pool(mode: str, on_demand: bool):
    options = {"mode": mode, "max_workers": 2}
    if on_demand:
        options["on_demand"] = True
    return Stopper.options(**options).init()


def _no_leftovers(threads_before: set, children_before: set) -> bool:
    return not (set(concurry_threads()) - threads_before) and not (child_pids() - children_before)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("on_demand", [False, True], ids=["fixed", "on_demand"])
def test_stop_in_a_done_callback_returns(pool_mode, on_demand):
    threads, children = set(concurry_threads()), child_pids()
    pool = _pool(pool_mode, on_demand)
    returned = threading.Event()

    def stop_pool(_future) -> None:
        pool.stop()
        returned.set()

    first = pool.nap(0.3)
    first.add_done_callback(stop_pool)
    queued = [pool.nap(0.05) for _ in range(3)]
    assert returned.wait(20), "stop() inside a done callback never returned"
    assert isinstance(first.result(timeout=5), int)
    for f in queued:  # every future ends: finished or cancelled, never pending
        assert wait_until(f.done, 20)
    assert wait_until(lambda: _no_leftovers(threads, children), 20)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("on_demand", [False, True], ids=["fixed", "on_demand"])
def test_a_method_that_stops_its_own_pool_completes(on_demand):
    threads = set(concurry_threads())
    pool = _pool("thread", on_demand)
    inside = pool.stop_pool(pool, 0.05)
    assert inside.result(timeout=20) == "stopped from inside"
    with pytest.raises(RuntimeError):
        pool.nap(0)
    assert wait_until(lambda: not (set(concurry_threads()) - threads), 20)


@pytest.mark.timeout(60)
def test_stop_from_a_callback_fired_by_the_stop_itself(pool_mode):
    """A stop that cancels queued calls fires their callbacks; those may call stop() again
    (on the stopping thread or the pool's helpers) and must not wait for the stop in progress."""
    threads, children = set(concurry_threads()), child_pids()
    pool = _pool(pool_mode, False)
    running = [pool.nap(1.0) for _ in range(2)]
    queued = [pool.nap(0.0) for _ in range(6)]
    seen = []
    for f in queued:
        f.add_done_callback(lambda _f: (pool.stop(), seen.append(1)))
    pool.stop(timeout=0.1, cancel_futures=True)
    assert all(f.done() for f in queued) and len(seen) == len(queued)
    assert all(wait_until(f.done, 20) for f in running)
    assert wait_until(lambda: _no_leftovers(threads, children), 20)
