"""Limits given to workers, pools and tasks: ``self.limits`` inside the worker, a list given to a
pool is one set for all its workers, private sets are copied per worker, shared sets are the
caller's own, a ``CallLimit`` counts every call, and a failed attempt's units go back before the
retry's back-off. Every local mode and pools of two."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import itertools
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from concurry import (
    CallLimit,
    Executor,
    LimitPool,
    LimitSet,
    RateLimit,
    ResourceLimit,
    TaskWorker,
    task,
    worker,
)
from conftest import POOL_SETUPS, WORKER_SETUP_IDS, WORKER_SETUPS, wait_until

SETUPS, IDS = WORKER_SETUPS, WORKER_SETUP_IDS
NEVER = 600.0  # a window so long that a spent call unit never comes back during a test


class Guarded:
    """Records what it sees of ``self.limits``, and holds units the way users do."""

    def __init__(self) -> None:
        self.in_init = self.limits  # readable already inside __init__

    def describe(self) -> tuple:
        limits = self.limits
        keys = sorted(limits.keys) if isinstance(limits, LimitSet) else None
        kind = "LimitSet" if isinstance(limits, LimitSet) else type(limits).__name__  # or a subclass
        return kind, keys, limits.shared, limits is self.in_init

    def always_grants(self) -> tuple:
        with self.limits.acquire(requested={"anything": 7}, timeout=5) as acq:
            granted = acq.successful
        return granted, self.limits.try_acquire().successful

    def inside(self, where: str, tag: str, hold: bool, wait_for_peer: float) -> tuple:
        """Be inside (holding one ``slot`` if ``hold``) until another call is inside too, or
        ``wait_for_peer`` seconds pass; returns (pid, thread, start, end, met a peer)."""
        held = self.limits.acquire(requested={"slot": 1}) if hold else contextlib.nullcontext()
        with held:
            start = time.monotonic()
            mine = Path(where, f"{tag}.in")
            mine.touch()
            met = False
            deadline = start + wait_for_peer
            while time.monotonic() < deadline:
                if any(p.name != mine.name for p in Path(where).glob("*.in")):
                    met = True  # both inside now: the other learns it from "met"
                    Path(where, "met").touch()
                    break
                if Path(where, "met").exists():
                    met = True
                    break
                time.sleep(0.01)
            mine.unlink()
            end = time.monotonic()
        return os.getpid(), threading.get_ident(), start, end, met

    def take_slot(self) -> float:
        """Wait for a ``slot`` unit; the time it was granted."""
        with self.limits.acquire(requested={"slot": 1}, timeout=60):
            return time.monotonic()

    def try_slot(self) -> bool:
        acquisition = self.limits.try_acquire(requested={"slot": 1})
        acquisition.release()
        return acquisition.successful

    def hold_then_fail(self, marker: str) -> None:
        self.limits.acquire(requested={"slot": 1})  # held, never released by the method
        Path(marker).touch()
        raise ValueError("failed while holding a slot")

    async def hold_then_fail_async(self, marker: str) -> None:
        await self.limits.async_acquire(requested={"slot": 1})
        Path(marker).touch()
        raise ValueError("failed while holding a slot")

    def one(self) -> int:
        return 1

    def two(self) -> int:
        return 2

    async def three(self) -> int:
        await asyncio.sleep(0)
        return 3

    def four(self) -> int:
        return 4


def _make(setup, **options):
    m, n = setup
    return worker(Guarded).options(mode=m, max_workers=n, **options).init()


def _call(w, setup, method: str, *args):
    """The call's future; a sync worker's call runs in a helper thread (it would block us)."""
    if setup[0] != "sync":
        return getattr(w, method)(*args)
    future: cf.Future = cf.Future()

    def run() -> None:
        try:
            future.set_result(getattr(w, method)(*args).result())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return future


def _shared(setup, *limits) -> LimitSet:
    """A set shared with the caller that can serve this setup's workers."""
    return LimitSet(list(limits), shared=True, mode=setup[0] if setup[0] in ("process", "ray") else "thread")


@pytest.fixture(params=SETUPS, ids=IDS)
def setup(request):
    return request.param


# ---- self.limits ----


def test_without_limits_self_limits_is_an_empty_set_that_always_grants(setup):
    w = _make(setup)
    try:
        assert w.describe().result(timeout=30) == ("LimitSet", [], False, True)
        assert w.always_grants().result(timeout=30) == (True, True)
    finally:
        w.stop()


def test_self_limits_is_the_workers_set_in_init_and_methods(setup):
    w = _make(setup, limits=[ResourceLimit("slot", 2), RateLimit("tokens", 100, 1)])
    try:
        kind, keys, shared, same = w.describe().result(timeout=30)
        # a list given to a pool is one shared set; given to one worker, its own private set
        assert (kind, keys, shared, same) == ("LimitSet", ["slot", "tokens"], setup[1] > 1, True)
    finally:
        w.stop()


def test_self_limits_in_pydantic_slots_and_worker_subclasses():
    from pydantic import BaseModel

    class Model(BaseModel):
        name: str

        def keys(self) -> list:
            return sorted(self.limits.keys)

    class Slotted:
        __slots__ = ("seen",)

        def __init__(self) -> None:
            self.seen = sorted(self.limits.keys)

        def keys(self) -> tuple:
            return self.seen, sorted(self.limits.keys)

    class Own:
        limits = "the class's own attribute"

        def keys(self) -> str:
            return self.limits

    limits = [ResourceLimit("slot", 1)]
    m = worker(Model).options(mode="thread", limits=limits).init(name="a")
    s = worker(Slotted).options(mode="thread", limits=limits).init()
    o = worker(Own).options(mode="thread", limits=limits).init()
    try:
        assert m.keys().result(timeout=10) == ["slot"]
        assert s.keys().result(timeout=10) == (["slot"], ["slot"])
        assert o.keys().result(timeout=10) == "the class's own attribute"  # the user's name wins
    finally:
        for w in (m, s, o):
            w.stop()


# ---- one set for a pool, private copies, shared sets ----


@pytest.mark.timeout(120)
@pytest.mark.parametrize("setup", POOL_SETUPS)
def test_a_list_given_to_a_pool_is_one_set_for_all_its_workers(setup, tmp_path):
    free, limited = tmp_path / "free", tmp_path / "limited"
    free.mkdir()
    limited.mkdir()
    w = _make(setup)
    try:  # without limits the two workers are inside at once
        runs = [w.inside(str(free), str(i), False, 20.0) for i in range(2)]
        assert all(met for *_, met in (f.result(timeout=60) for f in runs))
    finally:
        w.stop()
    w = _make(setup, limits=[ResourceLimit("slot", 1)])
    try:
        runs = [f.result(timeout=60) for f in [w.inside(str(limited), str(i), True, 0.3) for i in range(4)]]
    finally:
        w.stop()
    assert len({(pid, thread) for pid, thread, *_ in runs}) == 2  # both workers took part
    assert not any(met for *_, met in runs)
    spans = sorted((start, end) for _, _, start, end, _ in runs)
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))


@pytest.mark.timeout(120)
def test_a_private_set_is_copied_for_each_worker(setup, tmp_path):
    private = LimitSet([ResourceLimit("slot", 1)])
    with private.acquire(requested={"slot": 1}):  # the caller's own copy: nobody else's
        w = _make(setup, limits=private)
        try:
            if setup[1] > 1:  # each worker its own unit: both inside at once
                runs = [w.inside(str(tmp_path), str(i), True, 20.0) for i in range(2)]
                assert all(met for *_, met in (f.result(timeout=60) for f in runs))
            else:
                assert w.try_slot().result(timeout=30) is True
            assert w.describe().result(timeout=30)[2] is False
        finally:
            w.stop()


@pytest.mark.timeout(120)
def test_a_shared_set_is_the_callers_own(setup):
    shared = _shared(setup, ResourceLimit("slot", 1))
    w = _make(setup, limits=shared)
    try:
        assert w.try_slot().result(timeout=30) is True
        held = shared.acquire(requested={"slot": 1})  # the caller holds the only unit
        assert _call(w, setup, "try_slot").result(timeout=30) is False
        waiting = [_call(w, setup, "take_slot") for _ in range(2)]
        done, _ = cf.wait(waiting, timeout=0.5)
        assert not done  # they wait for the caller
        released_at = time.monotonic()
        held.release()
        granted = [f.result(timeout=60) for f in waiting]
        assert all(at >= released_at for at in granted)
        assert shared.try_acquire(requested={"slot": 1}).successful  # and they gave it back
    finally:
        w.stop()


def test_a_process_shared_set_serves_workers_of_one_process_too():
    shared = LimitSet([ResourceLimit("slot", 1)], shared=True, mode="process")
    for m in ("sync", "thread", "asyncio"):
        w = worker(Guarded).options(mode=m, limits=shared).init()
        try:
            with shared.acquire(requested={"slot": 1}):
                assert w.try_slot().result(timeout=30) is False
            assert w.try_slot().result(timeout=30) is True
        finally:
            w.stop()


def test_a_limit_pool_is_given_as_it_is_with_private_sets_copied():
    shared = LimitSet([ResourceLimit("slot", 1)], shared=True, mode="thread")
    pool = LimitPool([shared, LimitSet([ResourceLimit("slot", 1)], shared=True, mode="thread")])
    w = worker(Guarded).options(mode="thread", limits=pool).init()
    try:
        assert w.describe().result(timeout=10)[0] == "LimitPool"
        with pool[0].acquire(requested={"slot": 1}), pool[1].acquire(requested={"slot": 1}):
            assert w.try_slot().result(timeout=10) is False
        assert w.try_slot().result(timeout=10) is True
    finally:
        w.stop()


# ---- refused at init() / options() ----


@pytest.mark.parametrize("max_workers", [1, 2], ids=["process", "process-pool"])
def test_a_thread_shared_set_cannot_serve_process_workers(max_workers):
    thread_set = LimitSet([ResourceLimit("slot", 1)], shared=True, mode="thread")
    builder = worker(Guarded).options(mode="process", max_workers=max_workers, limits=thread_set)
    with pytest.raises(ValueError, match=r"mode='thread'.*mode='process'.*LimitSet\(.*mode='process'\)"):
        builder.init()
    with pytest.raises(ValueError, match="mode='process'"):
        Executor(mode="process", limits=LimitPool([thread_set]))


@pytest.mark.parametrize(
    "bad",
    [5, "slot", {"slot": 1}, [ResourceLimit("slot", 1), "slot"], [object()], object(), LimitSet],
    ids=["int", "str", "dict", "list-with-str", "list-with-object", "object", "class"],
)
def test_bad_limits_option_is_a_type_error_naming_it(bad):
    class HasAcquire:  # having an ``acquire`` is not enough
        def acquire(self, *a, **k): ...

    for value in (bad, HasAcquire()):
        for make in (
            lambda v: worker(Guarded).options(limits=v),
            lambda v: worker(mode="thread", limits=v),
            lambda v: task(mode="thread", limits=v),
            lambda v: TaskWorker.options(limits=v),
        ):
            with pytest.raises(TypeError, match=r"limits must be a LimitSet, a LimitPool, a list of Limit"):
                make(value)


def test_limits_option_accepts_sets_pools_lists_and_none():
    for value in (
        [],
        (),
        [ResourceLimit("a", 1), CallLimit(5, 1)],
        LimitSet(),
        LimitPool([LimitSet()]),
        None,
    ):
        w = worker(Guarded).options(mode="sync", limits=value).init()
        assert w.always_grants().result() == (True, True)
        w.stop()
    with pytest.raises(ValueError, match="limits has two limits with the key 'a'"):
        worker(Guarded).options(limits=[ResourceLimit("a", 1), ResourceLimit("a", 2)])


# ---- CallLimit: one unit for every call ----


def _ended_unsuccessfully(future) -> bool:
    try:
        future.result(timeout=30)
    except cf.CancelledError:
        return True
    except (TimeoutError, cf.TimeoutError):
        return False  # still pending
    except Exception:
        return True  # failed
    return False


@pytest.mark.timeout(120)
def test_a_call_limit_counts_every_call_and_stop_ends_the_waiting_one(setup):
    w = _make(setup, limits=[CallLimit(capacity=3, window=NEVER)])
    # whatever the method (async def included): 3 calls start
    assert [f.result(timeout=60) for f in (w.one(), w.two(), w.three())] == [1, 2, 3]
    fourth = _call(w, setup, "four")
    with pytest.raises((TimeoutError, cf.TimeoutError)):  # (not the same class on Python 3.10)
        fourth.result(timeout=1.0)  # no unit comes back for minutes
    w.stop(timeout=1.0)  # returns, with the fourth still waiting for its unit
    if setup[0] != "sync":  # (a sync call is the caller's own thread, waiting)
        assert _ended_unsuccessfully(fourth)
    if setup[0] == "asyncio":  # the wait never blocked the loop: it ended, its thread is gone
        assert wait_until(lambda: not [t for t in threading.enumerate() if "concurry-asyncio" in t.name])


def test_a_call_limit_is_not_a_resource_and_takes_none(setup):
    w = _make(setup, limits=[CallLimit(capacity=1000, window=NEVER), ResourceLimit("slot", 1)])
    try:
        for _ in range(3):  # the call unit holds no slot: each call can take the only one
            assert w.try_slot().result(timeout=30) is True
    finally:
        w.stop()


# ---- @task and TaskWorker functions with a ``limits`` parameter ----


def uses_limits(x: int, limits) -> tuple:
    with limits.acquire(requested={"slot": 1}) as acq:
        return x, sorted(limits.keys), acq.successful


def uses_limits_kw_only(x: int, *, limits=None) -> tuple:
    return x, sorted(limits.keys)


def no_limits_parameter(x: int, **kwargs) -> tuple:
    return x, sorted(kwargs)


def fails_once_with_limits(marker: str, limits) -> list:
    if not os.path.exists(marker):
        Path(marker).touch()
        raise ValueError("first attempt")
    return sorted(limits.keys)


@pytest.mark.timeout(120)
def test_task_functions_with_a_limits_parameter_get_the_tasks_set(setup, tmp_path):
    m, n = setup
    limits = [ResourceLimit("slot", 2)]
    f = task(mode=m, max_workers=n, limits=limits)(uses_limits)
    g = task(mode=m, max_workers=n)(uses_limits)
    r = task(mode=m, max_workers=n, limits=limits, num_retries=2, retry_wait=0.01)(fails_once_with_limits)
    tw = TaskWorker.options(mode=m, max_workers=n, limits=limits).init()
    try:
        assert f(1).result(timeout=60) == (1, ["slot"], True)
        assert f.submit(2).result(timeout=60) == (2, ["slot"], True)
        assert list(f.map([3, 4], timeout=60)) == [(3, ["slot"], True), (4, ["slot"], True)]
        given = LimitSet([ResourceLimit("mine", 1)])
        assert f(5, limits=given).result(timeout=60) == (5, ["mine"], True)  # the caller's wins
        assert g(6).result(timeout=60) == (6, [], True)  # no limits: the empty set
        assert r(str(tmp_path / "marker")).result(timeout=60) == ["slot"]  # retried attempts too
        assert tw.submit(uses_limits_kw_only, 7).result(timeout=60) == (7, ["slot"])
        assert tw.submit(no_limits_parameter, 8).result(timeout=60) == (8, [])
        assert tw.submit(uses_limits, 9, given).result(timeout=60) == (9, ["mine"], True)  # positional
    finally:
        for t in (f, g, r):
            t.stop()
        tw.stop()


# ---- retries: a failed attempt's units go back before the back-off ----


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["hold_then_fail", "hold_then_fail_async"])
def test_a_failed_attempt_releases_its_units_before_the_back_off(setup, method, tmp_path):
    shared = _shared(setup, ResourceLimit("slot", 1))
    w = _make(setup, limits=shared, num_retries=1, retry_wait=NEVER, retry_jitter=0.0)
    marker = tmp_path / "attempted"
    try:
        failing = _call(w, setup, method, str(marker))
        assert wait_until(marker.exists, timeout=60)
        # the attempt failed holding the only slot; in its back-off the slot is free again
        assert wait_until(lambda: _try(shared), timeout=30)
        if setup[1] > 1:  # a sibling worker gets it while the first one waits to retry
            assert w.try_slot().result(timeout=30) is True
        assert not failing.done()  # still in its back-off
    finally:
        w.stop(timeout=5.0)  # cuts the back-off short: the last failure is raised
    with pytest.raises(ValueError, match="failed while holding a slot"):
        failing.result(timeout=30)


def _try(limit_set: LimitSet) -> bool:
    acquisition = limit_set.try_acquire(requested={"slot": 1})
    acquisition.release()
    return acquisition.successful


def test_without_retries_a_failed_call_keeps_what_it_holds(tmp_path):
    """The release is the retry loop's (before its wait); a call that is not retried is left as
    it is, like any code that forgets to release."""
    shared = LimitSet([ResourceLimit("slot", 1)], shared=True, mode="thread")
    w = worker(Guarded).options(mode="thread", limits=shared).init()
    try:
        with pytest.raises(ValueError):
            w.hold_then_fail(str(tmp_path / "m")).result(timeout=30)
        assert _try(shared) is False
    finally:
        w.stop()


# ---- a process pool of a class defined in a script's __main__ ----

SCRIPT = """
import os, time, tempfile
from pathlib import Path
from concurry import worker, task, LimitSet, ResourceLimit, CallLimit

class Counter:
    def __init__(self):
        self.keys_in_init = sorted(self.limits.keys)

    def hold(self):
        with self.limits.acquire(requested={"slot": 1}):
            start = time.monotonic()
            time.sleep(0.05)
            return os.getpid(), start, time.monotonic()

    def keys(self):
        return self.keys_in_init, sorted(self.limits.keys), self.limits.shared

@task(mode="process", max_workers=2, limits=[ResourceLimit("slot", 1)])
def where(x, limits):
    with limits.acquire(requested={"slot": 1}):
        return x, os.getpid() != PARENT, sorted(limits.keys)

PARENT = os.getpid()
limits = [ResourceLimit("slot", 1), CallLimit(100, 60)]
pool = worker(Counter).options(mode="process", max_workers=2, limits=limits).init()
print("keys", pool.keys().result())
runs = [f.result() for f in [pool.hold() for _ in range(6)]]
spans = sorted((s, e) for _, s, e in runs)
print("workers", len({pid for pid, _, _ in runs}))
print("overlap", any(e > s2 for (_, e), (s2, _) in zip(spans, spans[1:])))
pool.stop()

shared = LimitSet([ResourceLimit("slot", 1)], shared=True, mode="process")
single = worker(Counter).options(mode="process", limits=shared).init()
with shared.acquire(requested={"slot": 1}):
    f = single.hold()
    try:
        f.result(timeout=0.5)
        print("blocked False")
    except TimeoutError:
        print("blocked True")
print("after", f.result()[0] != PARENT)
single.stop()
print("task", where(1).result())
where.stop()
"""


@pytest.mark.timeout(150)
def test_a_process_pool_of_a_main_script_class_shares_its_limits(tmp_path):
    script = tmp_path / "limits_main.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "keys (['call_count', 'slot'], ['call_count', 'slot'], True)" in lines, proc.stdout
    assert "workers 2" in lines and "overlap False" in lines, proc.stdout
    assert "blocked True" in lines and "after True" in lines, proc.stdout
    assert "task (1, True, ['slot'])" in lines, proc.stdout
