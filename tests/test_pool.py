"""Worker pools (SPEC §4): dispatch, balancing, backpressure, on-demand, crashes, stop, stats."""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
import time

import pytest

from concurry import (
    temp_config,
    worker,
)
from concurry.backends import backend_class
from concurry.constants import ExecutionMode
from conftest import child_pids, concurry_threads, wait_until


@worker(mode="thread")
class Counter:
    """A stateful worker; ``who()`` names the worker (process id, thread id) a call ran on."""

    def __init__(self, start: int = 0):
        self.count = start

    def add(self, n: int) -> int:
        self.count += n
        return self.count

    def square(self, x: int) -> int:
        return x * x

    def who(self) -> tuple[int, int]:
        return os.getpid(), threading.get_ident()

    def nap(self, seconds: float) -> tuple[int, int]:
        time.sleep(seconds)
        return self.who()

    def wait_for_file(self, path: str, seconds: float = 0.0) -> tuple[int, int]:
        """Block until ``path`` exists (a gate that works across processes), then nap."""
        deadline = time.monotonic() + 30
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(seconds)
        return self.who()

    def wait_event(self, event: threading.Event, timeout: float = 10.0) -> tuple[int, int]:
        event.wait(timeout)
        return self.who()

    def fail(self, message: str) -> None:
        raise ValueError(message)

    def gated_take(self, seq: int, gate: str, seconds: float = 0.0) -> int:
        """Note ``seq`` as the next call this instance ran, then wait at the gate and nap."""
        self.__dict__.setdefault("seen", []).append(seq)
        self.wait_for_file(gate, seconds)
        return seq

    def seen_calls(self) -> list[int]:
        return self.__dict__.get("seen", [])

    def started_then_wait(self, started: str, gate: str) -> tuple[int, int]:
        """Mark ``started`` (a file), then block at ``gate``: a call known to be running."""
        open(started, "w").close()
        return self.wait_for_file(gate)

    def siblings(self, gate: str) -> tuple[int, set[int]]:
        """This worker's pid and the live children of its parent, seen from inside a call."""
        self.wait_for_file(gate, 0.05)
        return os.getpid(), live_children_of(os.getppid())

    def die_if(self, x: int, bad: int) -> int:
        if x == bad:
            os._exit(1)
        time.sleep(0.002)
        return x


class BrokenInit:
    def __init__(self):
        raise KeyError("broken on purpose")

    def ping(self) -> int:
        return 1


class FirstToStartFails:
    """The first instance to reach ``__init__`` raises at once; every other one sleeps ``seconds``,
    then marks ``<flag_dir>/slept-<pid>`` (so a test sees whether a sleep ran to its end)."""

    def __init__(self, flag_dir: str, seconds: float = 5.0):
        try:
            os.close(os.open(os.path.join(flag_dir, "failed"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            time.sleep(seconds)
            open(os.path.join(flag_dir, f"slept-{os.getpid()}"), "w").close()
        else:
            raise KeyError("first to start fails")

    def ping(self) -> int:
        return os.getpid()


class MeetingInit:
    """``__init__`` marks ``<folder>/<pid>`` and waits (up to 20 s) until ``expected`` workers
    have marked: the inits all see each other only if they run at the same time."""

    def __init__(self, folder: str, expected: int):
        open(os.path.join(folder, str(os.getpid())), "w").close()
        deadline = time.monotonic() + 20
        while len(os.listdir(folder)) < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        self.met = len(os.listdir(folder))

    def ping(self) -> tuple[int, int]:
        return os.getpid(), self.met


class SlowReplacement:
    """Starts at once, unless ``<flag_dir>/slow`` exists: then ``__init__`` waits for ``<flag_dir>/go``
    (so a test can hold a replacement worker in its start)."""

    def __init__(self, flag_dir: str):
        if os.path.exists(os.path.join(flag_dir, "slow")):
            deadline = time.monotonic() + 30
            while not os.path.exists(os.path.join(flag_dir, "go")) and time.monotonic() < deadline:
                time.sleep(0.005)

    def pid(self) -> int:
        return os.getpid()


def live_children_of(pid: int) -> set[int]:
    """Non-zombie children of ``pid``, read from /proc (works from any process of the same user)."""
    pids: set[int] = set()
    for thread_id in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{thread_id}/children") as f:
                pids.update(int(p) for p in f.read().split())
        except FileNotFoundError:
            continue
    alive = set()
    for child in pids:
        try:
            with open(f"/proc/{child}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(child)
        except FileNotFoundError:
            continue
    return alive


def where() -> tuple[int, int]:
    return os.getpid(), threading.get_ident()


def square(x: int) -> int:
    return x * x


def thread_count() -> int:
    return len(concurry_threads())


# ---- basics ----


def test_pool_has_the_worker_methods_and_spreads_calls(pool_mode):
    with Counter.options(mode=pool_mode, max_workers=3).init() as pool:
        assert pool.mode == pool_mode
        futures = [pool.square(i) for i in range(30)]
        assert [f.result(timeout=30) for f in futures] == [i * i for i in range(30)]
        workers = {pool.who().result(timeout=30) for _ in range(9)}
        assert len(workers) == 3
        with pytest.raises(AttributeError, match="missing"):
            pool.missing()
        with pytest.raises(AttributeError):
            pool._private()
        with pytest.raises(ValueError, match="boom"):
            pool.fail("boom").result(timeout=30)


def test_process_pool_workers_are_separate_processes():
    before = child_pids()
    with Counter.options(mode="process", max_workers=3).init() as pool:
        assert len(child_pids() - before) == 3  # all ready when init() returns
        pids = {pool.who().result(timeout=30)[0] for _ in range(6)}
        assert len(pids) == 3 and os.getpid() not in pids
    assert wait_until(lambda: not (child_pids() - before))


def test_each_worker_keeps_its_own_state():
    with Counter.options(mode="thread", max_workers=2).init(start=100) as pool:
        results = [pool.add(1).result(timeout=10) for _ in range(6)]
    # round robin: the two instances count 101, 102, 103 in turn
    assert results == [101, 101, 102, 102, 103, 103]


def test_init_returns_pool_only_for_max_workers_above_one():
    single = Counter.options(mode="thread", max_workers=1).init()
    pool = Counter.options(mode="thread", max_workers=2).init()
    try:
        assert not hasattr(single, "pool_stats")
        assert len(pool.pool_stats()["workers"]) == 2
    finally:
        single.stop()
        pool.stop()


def test_blocking_pool_returns_results():
    with Counter.options(mode="thread", max_workers=2, blocking=True).init() as pool:
        assert pool.square(7) == 49
        with pytest.raises(ValueError, match="nope"):
            pool.fail("nope")


@pytest.mark.parametrize("mode", ["sync", "asyncio"])
def test_single_thread_modes_reject_pools(mode):
    with pytest.raises(ValueError, match="max_workers"):
        Counter.options(mode=mode, max_workers=2)
    with pytest.raises(ValueError, match="on_demand"):
        Counter.options(mode=mode, on_demand=True)
    with pytest.raises(ValueError, match="max_workers"):
        worker(mode=mode, max_workers=4)(type("W", (), {}))


def test_init_error_is_raised_and_no_worker_is_left(pool_mode):
    threads, children = thread_count(), child_pids()
    with pytest.raises(KeyError, match="broken on purpose"):
        worker(BrokenInit).options(mode=pool_mode, max_workers=3).init()
    assert wait_until(lambda: thread_count() <= threads)
    assert wait_until(lambda: not (child_pids() - children))


@pytest.mark.timeout(30)
def test_process_pool_init_error_is_raised_without_waiting_for_slow_siblings(tmp_path):
    """One worker's ``__init__`` fails at once while its two siblings sleep 15 s in theirs:
    ``init()`` raises that error before any sleep ends, and kills the sleeping workers."""
    children = child_pids()
    with pytest.raises(KeyError, match="first to start fails"):
        worker(FirstToStartFails).options(mode="process", max_workers=3).init(str(tmp_path), 15.0)
    slept = [name for name in os.listdir(tmp_path) if name.startswith("slept-")]
    assert slept == [], "init() waited for a sibling's slow __init__ to end"
    assert not (child_pids() - children)  # the sleeping siblings are gone already


def test_process_pool_workers_start_in_parallel(tmp_path):
    """Three ``__init__``s that each wait for the other two: started one after another, the
    first would give up after 20 s having met only itself."""
    children = child_pids()
    with worker(MeetingInit).options(mode="process", max_workers=3).init(str(tmp_path), 3) as pool:
        assert len(child_pids() - children) == 3
        pings = {pool.ping().result(timeout=30) for _ in range(3)}
    assert len(pings) == 3 and all(met == 3 for _, met in pings), pings
    assert wait_until(lambda: not (child_pids() - children))


# ---- load balancing ----


@pytest.mark.parametrize(
    "given, expected",
    [("rr", "round_robin"), ("least_active", "active"), ("least_total", "total"), ("rand", "random"),
     ("ROUND_ROBIN", "round_robin")],
)
def test_balancing_aliases(given, expected):
    with Counter.options(mode="thread", max_workers=2, load_balancing=given).init() as pool:
        assert pool.pool_stats()["load_balancing"] == expected
        assert pool.square(3).result(timeout=10) == 9


def test_unknown_balancing_is_rejected_with_choices():
    with pytest.raises(ValueError, match="round_robin"):
        Counter.options(max_workers=2, load_balancing="fastest")


def test_round_robin_goes_in_turn():
    with Counter.options(mode="thread", max_workers=3).init() as pool:
        order = [pool.who().result(timeout=10) for _ in range(9)]
    assert order[:3] * 3 == order and len(set(order[:3])) == 3


@pytest.mark.parametrize("algorithm, avoids_busy_worker", [("active", True), ("round_robin", False)])
def test_active_avoids_the_busy_worker_round_robin_does_not(algorithm, avoids_busy_worker):
    """One long call occupies worker A. ``active`` sends every next call elsewhere (they all
    finish while A is still busy); ``round_robin`` queues some of them behind A's long call."""
    release = threading.Event()
    with Counter.options(mode="thread", max_workers=3, load_balancing=algorithm).init() as pool:
        long_call = pool.wait_event(release)
        answered, stuck = [], []
        patience = 5.0 if avoids_busy_worker else 0.3  # a call queued behind A waits for release
        for _ in range(6):
            f = pool.who()
            try:
                answered.append(f.result(timeout=patience))
            except cf.TimeoutError:
                stuck.append(f)
        release.set()
        busy_worker = long_call.result(timeout=10)
        for f in stuck:
            answered.append(f.result(timeout=10))
    if avoids_busy_worker:
        assert not stuck and busy_worker not in answered
    else:
        assert stuck and busy_worker in answered


@pytest.mark.timeout(90)
@pytest.mark.parametrize("algorithm", ["total", "round_robin"])
def test_total_sends_calls_to_a_replaced_worker_until_it_catches_up(algorithm, tmp_path):
    """Worker 0 dies; while its replacement starts, its calls go to worker 1. Afterwards
    ``total`` sends the next calls to the new worker 0 (fewest calls ever assigned) until the
    counts are even, where ``round_robin`` simply alternates again."""
    flags = str(tmp_path)
    children = child_pids()
    options = worker(SlowReplacement).options(mode="process", max_workers=2, load_balancing=algorithm)
    with options.init(flags) as pool:
        first, second = (pool.pid().result(timeout=30) for _ in range(2))  # workers 0 and 1
        open(os.path.join(flags, "slow"), "w").close()  # the replacement will wait in __init__
        os.kill(first, 9)
        # the death is noticed at once and the replacement starts without waiting for a call
        assert wait_until(lambda: pool.pool_stats()["workers"][0]["state"] == "replacing")
        during = [pool.pid().result(timeout=30) for _ in range(6)]
        assert during == [second] * 6  # worker 0 is being replaced: worker 1 takes everything
        assert pool.pool_stats()["workers"][0]["state"] == "replacing"
        open(os.path.join(flags, "go"), "w").close()
        assert wait_until(lambda: [w["state"] for w in pool.pool_stats()["workers"]] == ["running"] * 2)
        after = [pool.pid().result(timeout=30) for _ in range(6)]
        totals = [w["total"] for w in pool.pool_stats()["workers"]]
    replacement = (set(after) - {second}).pop()
    assert replacement not in (first, second)
    if algorithm == "total":
        assert after == [replacement] * 6 and totals == [7, 7]
    else:
        assert after == [replacement, second] * 3 and totals == [4, 10]
    assert wait_until(lambda: not (child_pids() - children))


def test_total_balances_calls_assigned():
    with Counter.options(mode="thread", max_workers=3, load_balancing="total").init() as pool:
        futures = [pool.nap(0.002 * (i % 4)) for i in range(30)]
        for f in futures:
            f.result(timeout=10)
        totals = [w["total"] for w in pool.pool_stats()["workers"]]
    assert totals == [10, 10, 10]


def test_random_uses_every_worker_and_not_in_turn():
    with Counter.options(mode="thread", max_workers=4, load_balancing="random").init() as pool:
        order = [pool.who().result(timeout=10) for _ in range(200)]
    assert len(set(order)) == 4
    assert order != order[:4] * 50


# ---- backpressure: the library's own queue ----


@pytest.mark.timeout(120)
def test_submission_never_blocks_and_backend_holds_at_most_max_queued(pool_mode, tmp_path, monkeypatch):
    """1,000 slow calls on 4 workers with ``max_queued_tasks=2``: every future is returned
    while the workers are still held at a gate (a blocking submit would deadlock here); no
    backend ever holds more than 2 unfinished calls; all 1,000 complete, and each worker ran
    its share in submission order (the library's queue is first in, first out)."""
    backend_cls = backend_class(ExecutionMode.parse(pool_mode))
    original_submit = backend_cls.submit
    lock = threading.Lock()
    most: dict[int, int] = {}

    def spy_submit(self, name, args, kwargs, future=None):
        result = original_submit(self, name, args, kwargs, future)
        with lock:  # what this worker's backend holds right after taking the call
            most[id(self)] = max(most.get(id(self), 0), self.unfinished)
        return result

    monkeypatch.setattr(backend_cls, "submit", spy_submit)
    gate = str(tmp_path / "gate")
    with Counter.options(mode=pool_mode, max_workers=4, max_queued_tasks=2).init() as pool:
        futures = [pool.gated_take(i, gate, 0.001) for i in range(1000)]
        stats = pool.pool_stats()
        assert sum(f.done() for f in futures) == 0
        assert stats["unfinished"] == 1000
        for w in stats["workers"]:
            assert w["in_backend"] <= 2
            assert w["in_backend"] + w["waiting"] == w["unfinished"] == 250
        open(gate, "w").close()
        _, not_done = cf.wait(futures, timeout=100)
        assert not not_done
        assert [f.result() for f in futures] == list(range(1000))
        seen = [pool.seen_calls().result(timeout=30) for _ in range(4)]  # one per worker, in turn
    # round robin: worker k got calls k, k+4, k+8, ... and ran them in that order
    assert seen == [list(range(k, 1000, 4)) for k in range(4)]
    assert len(most) == 4 and max(most.values()) == 2


def test_cancelling_a_waiting_call_skips_it():
    release = threading.Event()
    with Counter.options(mode="thread", max_workers=2, max_queued_tasks=1).init() as pool:
        blockers = [pool.wait_event(release) for _ in range(2)]
        waiting = [pool.add(1) for _ in range(4)]
        assert waiting[0].cancel()
        release.set()
        for f in blockers + waiting[1:]:
            f.result(timeout=10)
        assert waiting[0].cancelled()
        # worker 0 got blockers[0], waiting[0] (cancelled) and waiting[2]: its count is 1
        assert waiting[2].result() == 1 and waiting[1].result() == 1 and waiting[3].result() == 2


def test_default_max_queued_tasks_per_mode():
    with Counter.options(mode="thread", max_workers=2).init() as pool:
        assert pool.pool_stats()["max_queued_tasks"] is None
    with temp_config(thread_max_queued_tasks=5), Counter.options(mode="thread", max_workers=2).init() as pool:
        assert pool.pool_stats()["max_queued_tasks"] == 5


def test_process_pool_default_max_queued_tasks_is_100():
    with Counter.options(mode="process", max_workers=2).init() as pool:
        assert pool.pool_stats()["max_queued_tasks"] == 100


# ---- statistics ----


def test_pool_stats_per_worker_counts():
    release = threading.Event()
    with Counter.options(mode="thread", max_workers=2, load_balancing="active").init() as pool:
        busy = pool.wait_event(release)
        stats = pool.pool_stats()
        assert stats["load_balancing"] == "active" and stats["mode"] == "thread"
        assert sorted(w["unfinished"] for w in stats["workers"]) == [0, 1]
        release.set()
        busy.result(timeout=10)
        for f in [pool.square(i) for i in range(10)]:
            f.result(timeout=10)
        # counters drop in the futures' done callbacks, just after the results are visible
        assert wait_until(lambda: pool.pool_stats()["unfinished"] == 0)
    stats = pool.pool_stats()
    assert stats["total"] == 11 and stats["stopped"]
    assert [w["state"] for w in stats["workers"]] == ["stopped", "stopped"]
    assert all({"worker", "unfinished", "in_backend", "waiting", "total", "restarts"} <= set(w)
               for w in stats["workers"])
