"""Process-shared limits (``LimitSet(shared=True, mode="process")``): the parent and spawned or
forked children see one limiter; accuracy with 2 contending processes; resource units of a
killed holder come back; a killed queued waiter blocks nobody; pickling rules; no leaked file
descriptors; the state directory goes with the process that made it."""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import threading
import time

import pytest

from concurry import LimitPool, LimitSet, RateLimit, ResourceLimit
from limits_checks import check_bound, throughput

SPAWN = mp.get_context("spawn")
pytestmark = pytest.mark.timeout(60)


def _shared(limits, **kwargs):
    return LimitSet(limits, shared=True, mode="process", **kwargs)


def _until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ---- children (module level: spawned children import them) ----


def _take_all(ls, out):
    n = 0
    while True:
        with ls.try_acquire({"tokens": 1}) as acq:  # and one db unit
            if not acq.successful:
                break
            n += 1
    out.put((n, time.monotonic()))


def _hold_then(ls, ready, how):
    acq = ls.acquire({"db": 2}, timeout=10)
    ready.set()
    if how == "exit":
        os._exit(3)  # dies holding the units, no cleanup
    time.sleep(60)  # killed with SIGKILL by the test
    acq.release()


def _queue_up(ls, requested):
    ls.acquire(requested)  # waits until killed


def _contend_all(sets, go, deadline, out):
    grants = {key: [] for key in sets}

    def run(key):
        ls = sets[key]
        while time.monotonic() < deadline.value:
            with ls.acquire({key: 1}, timeout=10) as acq:
                grants[key].append((acq.granted_at, 1))

    go.wait(30)
    threads = [threading.Thread(target=run, args=(key,)) for key in sets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(grants)


def _pool_in_child(pool, out):
    held = [pool.try_acquire() for _ in range(3)]
    out.put(sorted(str(a.config.get("region")) for a in held if a.successful))
    time.sleep(60)  # killed by the test, holding the units


def _outlive_the_set(ls, ready, dropped, out):
    held = ls.acquire()
    ready.set()
    dropped.wait(30)
    try:
        ls.acquire(timeout=5)  # must wait, and the set's files are gone
        out.put("granted")
    except Exception as e:
        out.put(f"{type(e).__name__}: {e}")
    held.release()


def _private_in_child(ls, out):
    acq = ls.try_acquire({"tokens": 5})
    out.put((acq.successful, ls.shared))


# ---- one limiter for the parent and its children ----


def test_parent_and_spawned_children_see_one_limiter():
    ls = _shared([RateLimit("tokens", 30, 3600), ResourceLimit("db", 2)])
    held = ls.acquire({"tokens": 10, "db": 2})  # the children find db taken
    out = SPAWN.Queue()
    before = time.monotonic()
    children = [SPAWN.Process(target=_take_all, args=(ls, out)) for _ in range(2)]
    for c in children:
        c.start()
    results = [out.get(timeout=30) for _ in children]
    for c in children:
        c.join(10)
    assert [r[0] for r in results] == [0, 0]  # db is held here, so no tokens either: all or nothing
    held.release()
    children = [SPAWN.Process(target=_take_all, args=(ls, out)) for _ in range(2)]
    for c in children:
        c.start()
    results = [out.get(timeout=30) for _ in children]
    for c in children:
        c.join(10)
    assert sum(r[0] for r in results) == 20  # 30 minus the parent's 10, split between the children
    assert not ls.try_acquire({"tokens": 1}).successful
    assert all(before < r[1] < time.monotonic() for r in results)  # one clock for all processes


@pytest.mark.timeout(90)
def test_accuracy_with_2_processes():
    spec = {
        "token_bucket": (10, 0.05),
        "gcra": (10, 0.05),
        "leaky_bucket": (5, 0.25),  # 50 ms apart: a wake-up late by less than half that keeps the pace
        "fixed_window": (20, 0.1),
        "sliding_window": (20, 0.1),
    }
    sets = {a: _shared([RateLimit(a, c, w, a)]) for a, (c, w) in spec.items()}
    go, deadline, out = SPAWN.Event(), SPAWN.Value("d", 0.0), SPAWN.Queue()
    children = [SPAWN.Process(target=_contend_all, args=(sets, go, deadline, out)) for _ in range(2)]
    for c in children:
        c.start()
    time.sleep(0.5)  # let both import; the run starts when go is set either way
    deadline.value = time.monotonic() + 3.0
    go.set()
    results = [out.get(timeout=60) for _ in children]
    for c in children:
        c.join(10)
    for a, (capacity, window) in spec.items():
        per_child = [r[a] for r in results]
        assert all(per_child), f"{a}: a process got nothing"
        grants = per_child[0] + per_child[1]
        check_bound(a, capacity, window, grants)
        got, allowed = throughput(a, capacity, window, grants, deadline.value)
        assert 0.97 * allowed <= got <= allowed + 1e-6, (a, got, allowed)


def test_limit_pool_of_shared_sets_in_a_child():
    pool = LimitPool([_shared([ResourceLimit("db", 1)], config={"region": r}) for r in ("eu", "us")])
    out = SPAWN.Queue()
    child = SPAWN.Process(target=_pool_in_child, args=(pool, out))
    child.start()
    assert out.get(timeout=30) == ["eu", "us"]  # one unit of each set; the third try was refused
    assert not pool.try_acquire().successful  # the parent sees both taken
    child.kill()
    child.join(10)
    acq = pool.acquire(timeout=10)  # the dead child's units come back
    assert acq.config["region"] in ("eu", "us")


# ---- dead holders and dead waiters ----


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_units_of_a_killed_holder_come_back(how):
    ls = _shared([ResourceLimit("db", 2)])
    ready = SPAWN.Event()
    child = SPAWN.Process(target=_hold_then, args=(ls, ready, how))
    child.start()
    assert ready.wait(30)
    assert not ls.try_acquire().successful
    if how == "sigkill":
        os.kill(child.pid, signal.SIGKILL)
    acq = ls.acquire({"db": 2}, timeout=10)  # woken by the dead-holder check (the child is a zombie)
    assert acq.successful
    acq.release()
    child.join(10)
    assert ls.try_acquire({"db": 2}).successful


def test_a_killed_queued_waiter_blocks_nobody():
    ls = _shared([ResourceLimit("db", 1)])
    held = ls.acquire()
    child = SPAWN.Process(target=_queue_up, args=(ls, {"db": 1}))
    child.start()
    _until(lambda: ls._store.view[1] == 1, timeout=30)  # the child is queued
    later = []
    behind = threading.Thread(target=lambda: later.append(ls.acquire(timeout=10)))
    behind.start()  # queued behind the child
    _until(lambda: ls._store.view[1] == 2)
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    held.release()
    behind.join(15)
    assert later and later[0].successful
    later[0].release()
    assert ls.try_acquire().successful  # and a new request is not held back by the dead one


def test_fork_started_child_uses_the_same_limiter():
    ls = _shared([ResourceLimit("db", 2), RateLimit("tokens", 10, 3600)])
    held = ls.acquire({"tokens": 4})
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: wait for both units while the parent holds one
        try:
            os.close(read)
            first = ls.try_acquire({"db": 1, "tokens": 6})  # the parent holds 1 unit and 4 tokens
            ok = first.successful and not ls.try_acquire({"tokens": 1}).successful
            first.release()
            os.write(write, b"w")
            acq = ls.acquire({"db": 2}, timeout=10)
            acq.release()
            os._exit(0 if ok else 2)
        except BaseException:
            os._exit(1)
    os.close(write)
    assert os.read(read, 1) == b"w"
    _until(lambda: ls._store.view[1] == 1)  # the child waits for the unit the parent holds
    held.release()
    assert os.waitpid(pid, 0)[1] == 0
    os.close(read)
    assert ls.try_acquire({"db": 1}).successful  # the child's unit came back (the other is held)


def test_forked_child_leaves_the_parents_waiters_wakeable():
    ls = _shared([ResourceLimit("db", 1)])
    held = ls.acquire()
    threading.Timer(0.1, held.release).start()
    ls.acquire(timeout=10).release()  # this thread waited: it has its wake-up FIFO
    fifos = sorted(os.listdir(ls._store.directory))
    pid = os.fork()
    if pid == 0:
        gc.collect()
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    # the child dropped its copy of this thread's waiter: the FIFO others write to must remain
    assert sorted(os.listdir(ls._store.directory)) == fifos
    held = ls.acquire()
    threading.Timer(0.1, held.release).start()
    assert ls.acquire(timeout=10).successful


# ---- pickling ----


def test_private_set_reaches_a_child_as_a_fresh_copy_and_thread_set_refuses():
    private = LimitSet([RateLimit("tokens", 5, 3600)])
    private.acquire({"tokens": 5})  # used up here
    out = SPAWN.Queue()
    child = SPAWN.Process(target=_private_in_child, args=(private, out))
    child.start()
    assert out.get(timeout=30) == (True, False)
    child.join(10)
    with pytest.raises(TypeError, match="cannot be sent to another process"):
        pickle.dumps(LimitSet([RateLimit("tokens", 5, 3600)], shared=True, mode="thread"))


def test_shared_set_unpickled_in_the_same_process_is_the_same_limiter_without_new_fds():
    ls = _shared([ResourceLimit("db", 2)])
    ls.try_acquire().release()
    gc.collect()
    before = _open_fds()
    for _ in range(50):
        copy = pickle.loads(pickle.dumps(ls))
        copy.acquire().release()
    held = copy.acquire({"db": 2})
    assert not ls.try_acquire().successful
    held.release()
    del copy, held
    gc.collect()
    assert _open_fds() <= before


def test_waiting_threads_leave_no_fifos_or_fds():
    ls = _shared([ResourceLimit("db", 1)])
    held = ls.acquire()
    gc.collect()
    before = _open_fds()
    done = []

    def wait():
        ls.acquire(timeout=30).release()
        done.append(1)

    threads = [threading.Thread(target=wait) for _ in range(40)]
    for t in threads:
        t.start()
    _until(lambda: ls._store.view[1] == 40)
    held.release()
    for t in threads:
        t.join(30)
    assert len(done) == 40
    gc.collect()
    _until(lambda: _open_fds() <= before)
    assert os.listdir(ls._store.directory) == ["state"]


_SCRIPT = """
import sys
from concurry import LimitSet, ResourceLimit
ls = LimitSet([ResourceLimit("db", 1)], shared=True, mode="process")
ls.acquire()
print(ls._store.directory, flush=True)
"""


def test_state_directory_goes_when_the_creating_process_exits():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=30, env=env)
    directory = out.stdout.strip()
    assert out.returncode == 0 and directory.startswith(os.sep), out.stderr
    assert not os.path.exists(directory)
    ls = _shared([ResourceLimit("db", 1)])
    directory = ls._store.directory
    assert os.path.exists(directory)
    del ls
    gc.collect()
    assert not os.path.exists(directory)  # and when its set is dropped


def test_a_set_dropped_by_its_maker_fails_clearly_elsewhere():
    ls = _shared([ResourceLimit("db", 1)])
    ready, dropped, out = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    child = SPAWN.Process(target=_outlive_the_set, args=(ls, ready, dropped, out))
    child.start()
    assert ready.wait(30)
    data = pickle.dumps(ls)
    del ls
    gc.collect()
    dropped.set()
    assert out.get(timeout=30).startswith("RuntimeError: this LimitSet(shared=True, mode='process') is gone")
    child.join(10)
    with pytest.raises(RuntimeError, match="the process that made it dropped it or exited"):
        pickle.loads(data)
