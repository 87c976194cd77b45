"""Ray mode (``mode="ray"``): what is particular to actors — ObjectRef handover, actor options,
a dead actor, stop killing every actor, interpreter exit, scripts, retries inside the actor.

One local Ray serves the whole session (``ray_cluster`` in conftest); workers are reused within
this module where the behaviour allows, since every actor is a Python process to start.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import ray

import concurry
from concurry import (
    Executor,
    RetryValidationError,
    WorkerCrashedError,
    WorkerStoppedError,
    async_gather,
    async_wait,
    gather,
    task,
    wait,
    worker,
    wrap_future,
)
from conftest import process_alive, wait_until

pytestmark = [pytest.mark.timeout(120), pytest.mark.ray]


@worker(mode="ray")
class Box:
    def __init__(self, start: int = 0, folder: str | None = None):
        self.value = start
        self.attempts: list[int] = []
        self.folder = folder

    def stop(self) -> None:  # the instance's own clean-up, run by the worker's stop()
        if self.folder is not None:
            open(os.path.join(self.folder, f"stopped-{os.getpid()}"), "w").close()

    def add(self, x: int) -> int:
        self.value += x
        return self.value

    def where(self) -> tuple[int, str]:
        return os.getpid(), ray.get_runtime_context().get_actor_id()

    def fail(self, message: str) -> None:
        raise ValueError(message)

    def env(self, key: str) -> str | None:
        return os.environ.get(key)

    def nap(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def wait_for(self, path: str, limit: float = 60.0) -> bool:
        """Runs until ``path`` exists (True), or ``limit`` seconds (False)."""
        deadline = time.monotonic() + limit
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def make(self, n: int, delay: float = 0.0) -> list[int]:
        time.sleep(delay)
        return list(range(n))

    def length(self, items) -> int:
        return len(items)

    def total(self, nested) -> int:
        return sum(len(x) for x in nested["lists"]) + len(nested["pair"][1])

    async def later(self, x: int) -> int:
        await asyncio.sleep(0.01)
        return x * 2

    def die(self) -> None:
        os._exit(1)

    def flaky(self) -> list[int]:
        self.attempts.append(os.getpid())
        if len(self.attempts) < 3:
            raise ConnectionError("not yet")
        return self.attempts

    def lock(self) -> threading.Lock:
        return threading.Lock()

    def resources(self) -> dict:
        return ray.get_runtime_context().get_assigned_resources()


class BrokenInit:
    def __init__(self):
        raise LookupError("no such thing")


@pytest.fixture(scope="module")
def box(ray_cluster):
    w = Box.init(10)
    yield w
    w.stop()


@pytest.fixture(scope="module")
def other(ray_cluster):
    w = Box.init()
    yield w
    w.stop()


def gone(pids: set[int]) -> bool:
    """Have these actors' processes exited? (Ray's state API needs the dashboard, which the
    test cluster does not run; a killed actor's worker process exits.)"""
    return wait_until(lambda: not any(process_alive(pid) for pid in pids), timeout=30)


def test_calls_run_in_order_on_one_actor_and_futures_are_ray_futures(box):
    futures = [box.add(1) for _ in range(20)]
    assert [f.result(timeout=60) for f in futures] == list(range(11, 31))
    f = box.where()
    assert isinstance(f, concurry.RayFuture) and isinstance(f, concurry.BaseFuture)
    assert isinstance(f.object_ref, ray.ObjectRef)
    pid, _ = f.result(timeout=60)
    assert pid != os.getpid()
    assert box.later(21).result(timeout=60) == 42  # an ``async def`` method

    called = []
    earlier = box.add(0)
    earlier.add_done_callback(called.append)
    assert wait([box.add(0)], timeout=60)[1] == set()
    assert earlier.done()  # calls finish in order
    assert wait_until(lambda: called == [earlier], 30)  # (callbacks run on a thread of their own)

    async def main():
        return await box.later(5)

    assert asyncio.run(main()) == 10

    slow = box.nap(2.0)
    with pytest.raises(TimeoutError):
        slow.result(timeout=0.05)
    assert slow.result(timeout=60) == 2.0


def _by_callback(f):
    got: cf.Future = cf.Future()
    f.add_done_callback(got.set_result)
    return got.result(timeout=30).result(0)


def _by_exception(f):
    error = f.exception(timeout=30)
    if error is not None:
        raise error
    return f.result(0)


async def _awaited(f):
    return await f


async def _awaited_wrapped(f):
    return await asyncio.wrap_future(f)


async def _async_waited(f):
    done, _ = await async_wait([f], timeout=30)
    return done.pop().result()


# A single worker's futures are settled by whoever looks at them (result, wait, gather), or by
# Ray's callback once something watches them (done(), callbacks, await, concurrent.futures' own
# wait): each way of waiting must see the outcome.
WAYS_OF_WAITING = {
    "result": lambda f: f.result(timeout=30),
    "exception": _by_exception,
    "done": lambda f: wait_until(f.done, 30) and f.result(0),
    "add_done_callback": _by_callback,
    "await": lambda f: asyncio.run(_awaited(f)),
    "asyncio.wrap_future": lambda f: asyncio.run(_awaited_wrapped(f)),
    "concurrent.futures.wait": lambda f: cf.wait([f], timeout=30).done.pop().result(0),
    "concurrent.futures.as_completed": lambda f: next(cf.as_completed([f], timeout=30)).result(0),
    "concurry.wait": lambda f: wait([f], timeout=30)[0].pop().result(0),
    "concurry.gather": lambda f: gather([f], timeout=30)[0],
    "gather, mixed with a local future": lambda f: gather([f, wrap_future(1)], timeout=30)[0],
    "async_wait": lambda f: asyncio.run(_async_waited(f)),
    "async_gather": lambda f: asyncio.run(async_gather([f], timeout=30))[0],
}


@pytest.mark.parametrize("way", list(WAYS_OF_WAITING))
def test_every_way_of_waiting_sees_a_single_workers_result(box, way):
    assert WAYS_OF_WAITING[way](box.nap(0.05)) == 0.05
    failed = box.fail("no")
    with pytest.raises(ValueError, match="no"):
        WAYS_OF_WAITING[way](failed)


@pytest.mark.parametrize("way", list(WAYS_OF_WAITING))
def test_every_way_of_waiting_sees_a_call_sent_only_once_its_local_argument_resolved(box, way):
    late: cf.Future = cf.Future()
    f = box.length(late)  # held here, in order, until ``late`` resolves; then sent to the actor
    threading.Timer(0.1, late.set_result, args=([1, 2, 3],)).start()
    assert WAYS_OF_WAITING[way](f) == 3


@pytest.mark.parametrize(
    "wait_all",
    [
        lambda fs: cf.wait(fs, timeout=60).done,
        lambda fs: set(cf.as_completed(fs, timeout=60)),
        lambda fs: wait([*fs, wrap_future(0)], timeout=60)[0],  # mixed: waiters, not the batch check
    ],
    ids=["concurrent.futures.wait", "concurrent.futures.as_completed", "concurry.wait, mixed"],
)
def test_waiting_on_many_calls_that_are_just_finishing_misses_none(other, wait_all):
    """A waiter installed on a call that finishes at that very moment still hears of it (Ray's
    callback can run at once when it is registered; it must not settle the future before the
    waiter is in place). Lost ones showed within a few rounds."""
    for _ in range(8):
        futures = [other.add(0) for _ in range(1000)]
        assert set(futures) <= wait_all(futures)


def test_a_call_ray_has_finished_is_done_at_once(box):
    f = box.nap(0.0)
    ray.wait([f.object_ref], fetch_local=False, timeout=30)  # finished at Ray; nobody looked yet
    assert f.done() and f.result(0) == 0.0


def test_calls_nobody_looks_at_are_counted_until_they_finish(ray_cluster):
    @task(mode="ray")
    def echo(x: int, delay: float = 0.0) -> int:
        time.sleep(delay)
        return x

    try:
        first = echo(0, 3.0)  # the others queue behind this one
        for i in range(300):
            echo(i)  # fire and forget: the future is dropped at once
        assert echo.pool_stats()["unfinished"] == 301
        assert first.result(timeout=60) == 0
        assert wait_until(lambda: echo.pool_stats()["unfinished"] == 0, 60)
    finally:
        echo.stop()


def test_cancel_and_a_done_callback_that_stops_the_worker():
    w = Box.init(0)
    running = w.nap(1.0)
    queued = w.add(5)
    assert queued.cancel() and queued.cancelled()
    with pytest.raises(cf.CancelledError):
        queued.result(timeout=60)
    assert running.result(timeout=60) == 1.0
    stopped = []
    last = w.add(1)
    last.add_done_callback(lambda f: (w.stop(), stopped.append(f.result())))  # on Ray's thread
    assert wait_until(lambda: len(stopped) == 1, timeout=30)
    with pytest.raises(WorkerStoppedError):
        w.add(1)


def test_errors_come_back_with_the_users_type_and_the_actor_keeps_serving(box):
    f = box.fail("bad input")
    with pytest.raises(ValueError) as info:
        f.result(timeout=60)
    assert type(info.value) is ValueError and str(info.value) == "bad input"
    text = "".join(getattr(info.value, "__notes__", [])) or str(info.value.__cause__)
    assert "in fail" in text and "raise ValueError(message)" in text  # the worker-side traceback
    assert box.add(0).result(timeout=60) >= 10


def test_what_cannot_be_pickled_fails_that_call_naming_the_method(box):
    with pytest.raises(TypeError, match=r"Box\.length: an argument cannot be sent to ray worker"):
        box.length(threading.Lock()).result(timeout=60)
    with pytest.raises(TypeError, match=r"Box\.lock returned a value that cannot be sent back"):
        box.lock().result(timeout=60)
    assert box.add(0).result(timeout=60) >= 10


def test_wait_and_gather_mix_ray_and_local_futures(box):
    local = cf.ThreadPoolExecutor(1)
    try:
        mixed = [box.later(1), local.submit(lambda: 7), box.nap(0.2), wrap_future(3)]
        assert gather(mixed, timeout=60) == [2, 7, 0.2, 3]
        done, not_done = wait([box.nap(0.1), local.submit(time.sleep, 0.1)], timeout=60)
        assert len(done) == 2 and not not_done
    finally:
        local.shutdown()


def test_a_done_callback_may_wait_for_another_ray_future(box, other):
    """User callbacks do not run on Ray's own callback thread (which handles every Ray reply to
    this process): one that waits for another Ray future gets it, and while a slow one runs the
    other futures keep finishing, for wait, gather and result alike."""
    chained: cf.Future = cf.Future()
    gate = threading.Event()
    first = box.nap(0.3)
    first.add_done_callback(lambda f: chained.set_result(other.add(f.result()).result(timeout=20)))
    slow = box.nap(0.3)
    slow.add_done_callback(lambda _: gate.wait(30))
    try:
        assert chained.result(timeout=30) == other.add(0).result(timeout=20)
        assert wait_until(slow.done, 30)  # its callback is running now, and waits for the gate
        later = [other.add(0), wrap_future(ray.put(5)), box.nap(0.1)]
        done, not_done = wait(later, timeout=20)
        assert len(done) == 3 and not not_done
        assert gather([box.nap(0.0), wrap_future(ray.put(6))], timeout=20) == [0.0, 6]
    finally:
        gate.set()


def test_wrap_future_of_an_object_ref_is_a_ray_future():
    f = wrap_future(ray.put([1, 2, 3]))
    assert isinstance(f, concurry.RayFuture)
    assert f.result(timeout=60) == [1, 2, 3]


def test_init_error_keeps_its_type():
    with pytest.raises(LookupError, match="no such thing"):
        worker(BrokenInit).options(mode="ray").init()


def test_ray_futures_are_handed_over_as_object_refs(box, other):
    slow = box.make(1000, 1.0)
    dependent = other.length(slow)  # the caller does not wait for ``slow``
    assert not slow.done()
    nested = other.total({"lists": [box.make(3), box.make(4)], "pair": (1, box.make(5))})
    assert dependent.result(timeout=60) == 1000
    assert nested.result(timeout=60) == 12


def test_a_failed_upstream_call_fails_the_dependent_call_with_its_type(box, other):
    failing = box.fail("upstream broke")
    with pytest.raises(ValueError, match="upstream broke"):
        other.length(failing).result(timeout=60)
    with pytest.raises(ValueError, match="upstream broke"):
        other.total({"lists": [failing], "pair": (1, [])}).result(timeout=60)
    local = cf.ThreadPoolExecutor(1)
    try:  # a pending local future among the arguments: the call waits for it, in order
        gate = local.submit(time.sleep, 0.3)
        pending = local.submit(lambda: [1, 2])
        assert other.length(pending).result(timeout=60) == 2
        assert gate.done()
    finally:
        local.shutdown()


def test_actor_options_pass_through_and_unknown_ones_are_refused():
    with pytest.raises(ValueError, match=r"unknown worker option 'num_cpu'.*num_cpus"):
        Box.options(num_cpu=1)
    with pytest.raises(ValueError, match=r"unknown worker option 'concurrency_groups'"):
        Box.options(concurrency_groups={"io": 2})  # the actor class declares its own
    w = Box.options(num_cpus=0, resources={"concurry_test": 1}).init()
    named = Box.options(
        name="concurry-test-box", namespace="concurry-tests", runtime_env={"env_vars": {"BOX_COLOUR": "teal"}}
    ).init()
    try:
        assert w.resources().result(timeout=60) == {"concurry_test": 1.0}
        assert named.env("BOX_COLOUR").result(timeout=60) == "teal"
        ray.get_actor("concurry-test-box", namespace="concurry-tests")  # (raises ValueError if absent)
    finally:
        w.stop()
        named.stop()


def test_retries_run_inside_the_actor_and_retry_validation_error_comes_back_as_itself():
    w = Box.options(
        num_retries={"flaky": 2, "add": 1, "*": 0},
        retry_wait=0.0,
        retry_on=ConnectionError,
        retry_until={"add": lambda result, **ctx: result > 100},
    ).init()
    try:
        pids = w.flaky().result(timeout=60)
        assert len(pids) == 3 and len(set(pids)) == 1 and pids[0] != os.getpid()
        with pytest.raises(RetryValidationError) as info:
            w.add(1).result(timeout=60)
        assert info.value.attempts == 2 and info.value.results == [1, 2]
    finally:
        w.stop()


def test_a_dead_actor_fails_its_running_and_queued_calls_and_later_calls():
    w = Box.init()
    assert w.add(1).result(timeout=60) == 1
    dying = w.die()
    queued = [w.add(1) for _ in range(3)]
    for f in [dying, *queued]:
        with pytest.raises(WorkerCrashedError):
            f.result(timeout=30)
    with pytest.raises(WorkerCrashedError):
        w.add(1)
    w.stop()


def test_a_pool_of_actors_replaces_a_dead_one_and_stop_kills_every_actor(tmp_path):
    pool = Box.options(max_workers=2, name="boxes").init(0, str(tmp_path))
    assert ray.get_actor("boxes-0") and ray.get_actor("boxes-1")  # one name per actor
    assert pool.pool_stats()["max_queued_tasks"] == 3
    # more calls than the two actors take at once: the rest wait in the pool, caller never blocks
    results = gather([pool.add(1) for _ in range(12)], timeout=60)
    assert sorted(results)[-1] <= 12 and len(results) == 12
    ids = {pool.where().result(timeout=60) for _ in range(4)}
    assert len(ids) == 2 and all(process_alive(pid) for pid, _ in ids)
    pool.die()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(w["restarts"] for w in pool.pool_stats()["workers"]) < 1:
        time.sleep(0.1)
    assert gather([pool.add(0) for _ in range(6)], timeout=60)  # the pool keeps serving
    ids |= {pool.where().result(timeout=60) for _ in range(4)}
    assert len(ids) == 3
    pool.stop()
    pool.stop()  # idempotent
    with pytest.raises(WorkerStoppedError):
        pool.add(1)
    assert gone({pid for pid, _ in ids})
    assert wait_until(lambda: not _named_actors("boxes-0", "boxes-1"), 30)  # Ray's own view: dead
    assert len(list(tmp_path.glob("stopped-*"))) == 2  # each live actor's instance ran its stop()


def _named_actors(*names: str) -> list[str]:
    """Those of ``names`` the cluster (its GCS) still has a live actor for."""
    alive = []
    for name in names:
        try:
            ray.get_actor(name)
        except ValueError:
            continue
        alive.append(name)
    return alive


def test_an_active_pool_never_queues_calls_behind_a_running_one(tmp_path):
    go_on = str(tmp_path / "go-on")
    with Box.options(max_workers=2, load_balancing="active").init() as pool:
        long_call = pool.wait_for(go_on)  # runs until the file is made
        try:
            shorts = [pool.where() for _ in range(6)]
            ran_on = {f.result(timeout=60) for f in shorts}  # all on the other actor, meanwhile
            assert not long_call.done() and len(ran_on) == 1
        finally:
            open(go_on, "w").close()
        assert long_call.result(timeout=60) is True


def test_stop_cancels_at_its_deadline_and_the_context_manager_kills_the_actor():
    with Box.init() as w:
        pid, _ = w.where().result(timeout=60)
        running = w.nap(30)
        queued = w.add(1)
        time.sleep(0.5)
        start = time.monotonic()
        w.stop(timeout=0.5)
        assert time.monotonic() - start < 10
        assert running.cancelled() and queued.cancelled()
    assert gone({pid})


def test_task_worker_runs_lambdas_and_closures():
    offset = 5

    def shifted(x):
        return x + offset

    with Executor(mode="ray") as ex:
        assert ex.submit(lambda x: x * 3, 4).result(timeout=60) == 12
        assert list(ex.map(shifted, range(3))) == [5, 6, 7]


SCRIPT = textwrap.dedent(
    """
    import os
    from concurry import task, worker

    @worker(mode="ray")
    class Greeter:
        def __init__(self, name):
            self.name = name

        def greet(self):
            return f"hello {self.name} from {os.getpid() != PARENT}"

    PARENT = os.getpid()

    @task(mode="ray")
    def square(x):
        return x * x

    g = Greeter.init("script")
    print(g.greet().result(timeout=60), flush=True)
    print(square(7).result(timeout=60), flush=True)
    # neither is stopped: exit must not hang
    """
)


@pytest.mark.timeout(180)
def test_script_classes_and_handles_left_at_exit(tmp_path, ray_cluster):
    script = tmp_path / "ray_script.py"
    script.write_text(SCRIPT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "RAY_ADDRESS": ray_cluster,  # join the session's cluster, as after ray.init(address=...)
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    done = subprocess.run(
        [sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=150
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:2] == ["hello script from True", "49"]
