"""Pools over their lifetime (SPEC §4, §2.4): stop and context managers, on-demand workers, crashed
workers replaced, TaskWorker pools, interpreter exit.
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import os
import threading
import time

import pytest

from concurry import (
    Executor,
    TaskWorker,
    WorkerCrashedError,
    WorkerStoppedError,
    task,
    worker,
)
from conftest import child_pids, process_alive, wait_until
from test_pool import (
    BrokenInit,
    Counter,
    live_children_of,
    square,
    thread_count,
    where,
)

# ---- stop ----


def test_stop_lets_waiting_calls_finish(pool_mode):
    pool = Counter.options(mode=pool_mode, max_workers=2, max_queued_tasks=1).init()
    futures = [pool.nap(0.01) for _ in range(12)]
    assert pool.pool_stats()["workers"][0]["waiting"] > 0
    pool.stop()
    assert all(f.done() and not f.cancelled() and f.exception() is None for f in futures)


def _running_and_waiting(pool, tmp_path) -> tuple[list, list, str]:
    """Two calls running (one per worker, held at a gate) and ten waiting in the library's queue."""
    gate = str(tmp_path / "gate")
    started = [str(tmp_path / f"started{i}") for i in range(2)]
    running = [pool.started_then_wait(path, gate) for path in started]
    waiting = [pool.square(i) for i in range(10)]
    assert sum(w["waiting"] for w in pool.pool_stats()["workers"]) > 0
    assert wait_until(lambda: all(os.path.exists(path) for path in started), timeout=30)
    return running, waiting, gate


@pytest.mark.timeout(60)
def test_stop_cancel_futures_cancels_waiting_calls(pool_mode, tmp_path):
    children = child_pids()
    pool = Counter.options(mode=pool_mode, max_workers=2, max_queued_tasks=1).init()
    running, waiting, gate = _running_and_waiting(pool, tmp_path)
    threading.Timer(0.2, lambda: open(gate, "w").close()).start()
    pool.stop(cancel_futures=True)
    assert all(f.result() for f in running)  # started calls finish
    assert all(f.cancelled() for f in waiting)
    assert wait_until(lambda: not (child_pids() - children))


@pytest.mark.timeout(60)
def test_stop_timeout_cancels_what_is_left_and_returns(pool_mode, tmp_path):
    children = child_pids()
    pool = Counter.options(mode=pool_mode, max_workers=2, max_queued_tasks=1).init()
    running, waiting, gate = _running_and_waiting(pool, tmp_path)
    pool.stop(timeout=0.2)  # the gate opens only after it returns: the running calls are held
    assert all(f.done() for f in running + waiting)  # never pending
    # cancelled, not finished: a stop that waited for the running calls would see them end
    # (at their 30 s cap) with a result
    assert all(f.cancelled() for f in running + waiting)
    open(gate, "w").close()  # (thread workers cannot be killed: let them end)
    assert wait_until(lambda: not (child_pids() - children))


def test_call_after_stop_raises_naming_the_pool(pool_mode):
    pool = Counter.options(mode=pool_mode, max_workers=2).init()
    pool.stop()
    pool.stop()  # idempotent
    with pytest.raises(WorkerStoppedError, match="Counter") as info:
        pool.square(2)
    assert isinstance(info.value, RuntimeError)
    assert "stopped" in repr(pool)


def test_context_manager_stops_and_releases_everything(pool_mode):
    threads, children = thread_count(), child_pids()
    with Counter.options(mode=pool_mode, max_workers=3).init() as pool:
        pool.square(3).result(timeout=30)
    with pytest.raises(WorkerStoppedError):
        pool.square(3)
    assert wait_until(lambda: thread_count() <= threads)
    assert wait_until(lambda: not (child_pids() - children))


@pytest.mark.timeout(60)
def test_leaving_the_with_block_finishes_every_queued_call(pool_mode, tmp_path):
    """Far more calls than the backends may hold (2 workers x 2), held back by a gate that
    opens just before the block ends: all of them have finished, with their results, when
    the ``with`` block is left."""
    gate = str(tmp_path / "gate")
    with Counter.options(mode=pool_mode, max_workers=2, max_queued_tasks=2).init() as pool:
        blockers = [pool.wait_for_file(gate) for _ in range(2)]  # one per worker (round robin)
        futures = [pool.square(i) for i in range(300)]
        assert sum(w["waiting"] for w in pool.pool_stats()["workers"]) >= 300 - 2
        threading.Timer(0.2, lambda: open(gate, "w").close()).start()
    assert all(f.done() and not f.cancelled() for f in blockers + futures)
    assert [f.result() for f in futures] == [i * i for i in range(300)]


def test_garbage_collected_pool_releases_its_workers():
    threads = thread_count()
    assert Counter.options(mode="thread", max_workers=3).init().square(4).result(timeout=10) == 16
    gc.collect()
    assert wait_until(lambda: thread_count() <= threads)


# ---- on demand ----


def test_on_demand_creates_a_worker_per_call_and_stops_it(pool_mode):
    children = child_pids()
    threads = thread_count()
    with Counter.options(mode=pool_mode, on_demand=True, max_workers=2).init() as pool:
        assert thread_count() == threads and child_pids() == children  # nothing before a call
        assert pool.pool_stats()["load_balancing"] == "random"
        results = [pool.add(1).result(timeout=30) for _ in range(4)]
        assert results == [1, 1, 1, 1]  # a fresh instance each time
        if pool_mode == "process":
            pids = [pool.who().result(timeout=30)[0] for _ in range(3)]
            assert len(set(pids)) == 3
        assert wait_until(lambda: pool.pool_stats()["alive_workers"] == 0)
        assert pool.pool_stats()["workers_created"] == 4 + (3 if pool_mode == "process" else 0)
    assert wait_until(lambda: not (child_pids() - children))
    assert wait_until(lambda: thread_count() <= threads)


@pytest.mark.timeout(90)
def test_on_demand_never_more_than_max_workers_alive(pool_mode, tmp_path):
    children = child_pids()
    gate = str(tmp_path / "gate")
    with Counter.options(mode=pool_mode, on_demand=True, max_workers=2).init() as pool:
        futures = [pool.wait_for_file(gate, 0.05) for _ in range(6)]  # returned at once
        assert wait_until(lambda: pool.pool_stats()["alive_workers"] == 2)
        stats = pool.pool_stats()
        assert stats["waiting"] == 4 and stats["unfinished"] == 6
        most_children = most_alive = 0
        open(gate, "w").close()
        while not all(f.done() for f in futures):
            most_children = max(most_children, len(child_pids() - children))
            most_alive = max(most_alive, pool.pool_stats()["alive_workers"])
            time.sleep(0.005)
        assert len({f.result() for f in futures}) == 6 or pool_mode == "thread"
    assert most_alive <= 2 and most_children <= 2
    if pool_mode == "process":
        assert most_children >= 1


def test_on_demand_max_workers_zero_means_cpu_count_minus_one():
    with Counter.options(mode="thread", on_demand=True, max_workers=0).init() as pool:
        assert pool.pool_stats()["max_workers"] == max(1, (os.cpu_count() or 2) - 1)
        assert pool.square(5).result(timeout=10) == 25


@pytest.mark.timeout(90)
def test_on_demand_process_max_workers_zero_caps_at_cpu_count_minus_one(tmp_path):
    """``max_workers=0``: at most ``cpu_count() - 1`` worker processes alive at once (seen from the
    test and from inside each call), a fresh process for every call."""
    cap = max(1, (os.cpu_count() or 2) - 1)
    children = child_pids()
    gate = str(tmp_path / "gate")
    with Counter.options(mode="process", on_demand=True, max_workers=0).init() as pool:
        assert pool.pool_stats()["max_workers"] == cap
        futures = [pool.siblings(gate) for _ in range(cap + 2)]
        assert wait_until(lambda: len(child_pids() - children) == cap, timeout=30)
        most = 0
        open(gate, "w").close()
        while not all(f.done() for f in futures):
            most = max(most, len(live_children_of(os.getpid()) - children))
            time.sleep(0.005)
        results = [f.result() for f in futures]
    pids = [pid for pid, _ in results]
    assert len(set(pids)) == cap + 2
    assert most <= cap
    assert all(len(alive - children) <= cap for _, alive in results)
    assert wait_until(lambda: not (child_pids() - children))


@pytest.mark.ray
@pytest.mark.timeout(120)
def test_on_demand_ray_max_workers_zero_has_no_fixed_cap(tmp_path):
    """In ray mode ``max_workers=0`` sets no cap: every waiting call gets its own actor at once,
    more than this machine's ``cpu_count() - 1`` (an actor holds no CPU while it runs)."""
    many = max(1, (os.cpu_count() or 2) - 1) + 2
    gate = str(tmp_path / "gate")
    with Counter.options(mode="ray", on_demand=True, max_workers=0).init() as pool:
        futures = [pool.wait_for_file(gate) for _ in range(many)]
        assert wait_until(lambda: pool.pool_stats()["alive_workers"] == many, timeout=60)
        open(gate, "w").close()
        pids = {f.result(timeout=60)[0] for f in futures}
    assert len(pids) == many


def test_on_demand_init_error_fails_the_call():
    pool = worker(BrokenInit).options(mode="thread", on_demand=True, max_workers=2).init()
    with pool, pytest.raises(KeyError, match="broken on purpose"):
        pool.ping().result(timeout=10)


def test_on_demand_stop_cancels_waiting_calls_at_timeout():
    release = threading.Event()
    pool = Counter.options(mode="thread", on_demand=True, max_workers=1).init()
    running = pool.wait_event(release, 5.0)
    waiting = [pool.square(i) for i in range(3)]
    pool.stop(timeout=0.2)
    assert running.done() and all(f.cancelled() for f in waiting)
    with pytest.raises(WorkerStoppedError):
        pool.square(1)
    release.set()


# ---- crashes ----


@pytest.mark.timeout(120)
def test_dead_process_worker_is_replaced_and_only_its_calls_fail():
    children = child_pids()
    with Counter.options(mode="process", max_workers=2, max_queued_tasks=4).init() as pool:
        futures = [pool.die_if(i, bad=50) for i in range(200)]
        _, not_done = cf.wait(futures, timeout=100)
        assert not not_done
        failed = [i for i, f in enumerate(futures) if f.exception() is not None]
        assert 50 in failed
        assert all(isinstance(futures[i].exception(), WorkerCrashedError) for i in failed)
        assert len(failed) <= 4  # only the calls the dead worker held
        assert [futures[i].result() for i in range(200) if i not in failed] == [
            i for i in range(200) if i not in failed
        ]
        assert sum(w["restarts"] for w in pool.pool_stats()["workers"]) == 1
        assert pool.square(6).result(timeout=30) == 36  # keeps serving
        assert len(child_pids() - children) == 2
    assert wait_until(lambda: not (child_pids() - children))


@pytest.mark.timeout(90)
def test_idle_process_worker_killed_is_replaced():
    import signal

    children = child_pids()
    with Counter.options(mode="process", max_workers=2).init() as pool:
        pids = {pool.who().result(timeout=30)[0] for _ in range(2)}
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        # replaced as soon as its death is noticed, before any call is routed to it
        assert wait_until(lambda: sum(w["restarts"] for w in pool.pool_stats()["workers"]) == 1)
        results = [f.result(timeout=30) for f in [pool.who() for _ in range(10)]]
        assert victim not in {pid for pid, _ in results}
        assert wait_until(lambda: sum(w["restarts"] for w in pool.pool_stats()["workers"]) == 1)
        assert len({pool.who().result(timeout=30)[0] for _ in range(4)}) == 2
        assert wait_until(lambda: len(child_pids() - children) == 2)
    assert wait_until(lambda: not (child_pids() - children))


# ---- TaskWorker, @task, Executor pools ----


def test_taskworker_pool_is_an_executor(pool_mode):
    with TaskWorker.options(mode=pool_mode, max_workers=3).init() as pool:
        assert isinstance(pool, cf.Executor)
        assert pool.submit(square, 4).result(timeout=30) == 16
        assert list(pool.map(square, range(10))) == [i * i for i in range(10)]
        assert len({pool.submit(where).result(timeout=30) for _ in range(6)}) == 3


def test_task_decorator_with_max_workers_runs_on_several_workers():
    @task(mode="thread", max_workers=3)
    def tid(_: int) -> int:
        time.sleep(0.01)
        return threading.get_ident()

    with tid:
        assert len(set(tid.map(range(9)))) == 3


def test_executor_pool_shutdown():
    ex = Executor(mode="thread", max_workers=2)
    futures = [ex.submit(time.sleep, 0.01) for _ in range(6)]
    ex.shutdown(wait=True)
    assert all(f.done() for f in futures)
    with pytest.raises(RuntimeError):
        ex.submit(square, 1)


def test_on_demand_taskworker():
    with TaskWorker.options(mode="thread", on_demand=True, max_workers=2).init() as pool:
        assert list(pool.map(square, range(5))) == [0, 1, 4, 9, 16]


# ---- interpreter exit ----

EXIT_SCRIPT = """
import os, time
from concurry import worker

@worker
class Sleeper:
    def nap(self, s):
        time.sleep(s)
        return os.getpid()

pool = Sleeper.options(mode={mode!r}, max_workers=2, on_demand={on_demand!r}, max_queued_tasks=1).init()
futures = [pool.nap(0.05) for _ in range(6)]
print("workers", futures[0].result(timeout=30), futures[1].result(timeout=30), flush=True)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("on_demand", [False, True])
def test_exit_without_stop_does_not_hang_or_leak(pool_mode, on_demand, tmp_path):
    """A script that never stops its pool (calls still queued) exits promptly and leaves no child."""
    import subprocess
    import sys

    script = tmp_path / "exit.py"
    script.write_text(EXIT_SCRIPT.format(mode=pool_mode, on_demand=on_demand))
    children = child_pids()
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    pids = [int(p) for p in proc.stdout.split("workers", 1)[1].split()]
    assert wait_until(lambda: not (child_pids() - children))
    assert wait_until(lambda: not any(process_alive(pid) for pid in pids if pid != os.getpid()))
