"""On-demand pools choose by ``load_balancing_on_demand`` (SPEC §4): which free worker position
gets the new worker for each call; a call waits only while every position is busy.
"""

from __future__ import annotations

import threading

import pytest

from concurry import global_config, temp_config, worker
from conftest import wait_until


@worker
class Where:
    def position(self) -> int:
        """The worker position this call runs on (its worker thread's name ends ``.<pos>.<n>``)."""
        return int(threading.current_thread().name.rsplit(".", 2)[1])

    def hold(self, event: threading.Event) -> int:
        event.wait(10)
        return self.position()


def _idle(pool, held: int = 0) -> bool:
    """Only ``held`` positions (held by long calls) are busy: other workers are gone."""
    stats = pool.pool_stats()
    busy = sum(w["state"] == "running" for w in stats["workers"])
    return stats["unfinished"] == held and busy == held


def _positions_of_sequential_calls(pool, n: int, held: int = 0) -> list[int]:
    out = []
    for _ in range(n):
        out.append(pool.position().result(timeout=10))
        assert wait_until(lambda: _idle(pool, held))  # this call's position is free again
    return out


def test_round_robin_goes_round_the_positions():
    options = {"mode": "thread", "on_demand": True, "max_workers": 3, "load_balancing": "round_robin"}
    with Where.options(**options).init() as pool:
        assert _positions_of_sequential_calls(pool, 9) == [0, 1, 2] * 3
        stats = pool.pool_stats()
        assert stats["load_balancing"] == "round_robin"
        assert [w["total"] for w in stats["workers"]] == [3, 3, 3]
        assert [w["created"] for w in stats["workers"]] == [3, 3, 3]


def test_random_is_not_in_turn():
    with Where.options(mode="thread", on_demand=True, max_workers=3, load_balancing="random").init() as pool:
        seen = _positions_of_sequential_calls(pool, 24)
    assert set(seen) <= {0, 1, 2}
    assert seen != [0, 1, 2] * 8  # in turn by chance: probability 3**-24


@pytest.mark.parametrize(("algorithm", "totals"), [("round_robin", [2, 4]), ("total", [3, 3])])
def test_total_evens_out_calls_where_round_robin_keeps_its_turn(algorithm, totals):
    """Position 0 is held by a long call while three calls run on position 1; afterwards
    ``total`` sends the next two calls to position 0 (fewer calls so far), round-robin
    alternates."""
    with Where.options(mode="thread", on_demand=True, max_workers=2, load_balancing=algorithm).init() as pool:
        release = threading.Event()
        held = pool.hold(release)
        assert wait_until(lambda: pool.pool_stats()["workers"][0]["state"] == "running")
        assert _positions_of_sequential_calls(pool, 3, held=1) == [1, 1, 1]  # the only free position
        release.set()
        assert held.result(timeout=10) == 0
        assert wait_until(lambda: _idle(pool))
        _positions_of_sequential_calls(pool, 2)
        assert [w["total"] for w in pool.pool_stats()["workers"]] == totals


def test_a_call_never_waits_while_a_position_is_free():
    """Whatever the algorithm, a call starts at once when fewer than max_workers workers exist."""
    with Where.options(mode="thread", on_demand=True, max_workers=2, load_balancing="random").init() as pool:
        release = threading.Event()
        for _ in range(5):
            first = pool.hold(release)
            second = pool.hold(release)
            assert wait_until(lambda: pool.pool_stats()["alive_workers"] == 2)
            assert pool.pool_stats()["waiting"] == 0
            release.set()
            assert sorted([first.result(timeout=10), second.result(timeout=10)]) == [0, 1]
            release.clear()
            assert wait_until(lambda: _idle(pool))


def test_load_balancing_on_demand_from_global_config_is_used():
    with temp_config(global_load_balancing_on_demand="round_robin"):
        assert global_config.defaults.load_balancing_on_demand.value == "round_robin"
        pool = Where.options(mode="thread", on_demand=True, max_workers=2).init()
    with pool:
        assert pool.pool_stats()["load_balancing"] == "round_robin"
        assert _positions_of_sequential_calls(pool, 4) == [0, 1, 0, 1]
