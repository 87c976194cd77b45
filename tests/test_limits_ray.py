"""Ray-shared limits (``LimitSet(shared=True, mode="ray")``): the driver and plain Ray actors see
one limiter, kept by one actor; atomic multi-key grants; rate accuracy of the five algorithms with
2 contending actors; try/async acquire (300 concurrent waiters), update, timeout; units of a killed
holder come back; a caller's release counts before its next call; pickled copies share the
keeper; the keeper goes with its driver; bad input; LimitPool of ray sets; which worker modes a
ray set serves (and a CallLimit ray set on in-process workers); no Ray installed."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
import subprocess
import sys
import threading
import time

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray binds 127.0.0.1 only
import ray

from concurry import CallLimit, LimitPool, LimitSet, RateLimit, ResourceLimit, worker
from concurry.limits.ray_store import _TRY, LimitKeeper, _dumps
from conftest import process_alive
from limits_checks import check_bound, throughput

# The actors below are defined here: Ray sends them by value (workers cannot import this file).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.timeout(60), pytest.mark.ray]


def _ray_set(limits, **kwargs):
    return LimitSet(limits, shared=True, mode="ray", **kwargs)


def _until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def _waiting(ls, n):
    _until(lambda: ls.keeper_state()["waiting"] == n)


@ray.remote(num_cpus=0)
class User:
    """A plain Ray actor that receives a ray set and uses it."""

    def __init__(self, ls=None):
        self.ls = ls
        self.held = None

    def hold(self, requested=None, ls=None):
        self.held = (ls or self.ls).acquire(requested, timeout=20)
        return self.held.config

    def release(self):
        self.held.release()

    def take(self, requested=None, timeout=20):
        try:
            with self.ls.acquire(requested, timeout=timeout) as acq:
                return acq.granted_at
        except TimeoutError as e:
            return e

    def try_take(self, requested=None):
        acq = self.ls.try_acquire(requested)
        acq.release()
        return acq.successful

    def intervals(self, n, requested=None):
        """``n`` holds in a row: (granted_at, time just before release) of each."""
        out = []
        for _ in range(n):
            with self.ls.acquire(requested, timeout=20) as acq:
                out.append((acq.granted_at, time.monotonic()))
        return out

    def warm(self, sets):
        """Make this actor a known caller of each set's keeper (a request for nothing)."""
        for key, ls in sets.items():
            ls.try_acquire({key: 0})

    def contend(self, sets, until):
        """A thread per set, each acquiring its key in a loop until ``until``: the grant times."""
        grants = {key: [] for key in sets}

        def run(key):
            while time.monotonic() < until:
                with sets[key].acquire({key: 1}, timeout=20) as acq:
                    grants[key].append((acq.granted_at, 1))

        threads = [threading.Thread(target=run, args=(key,)) for key in sets]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        return grants

    def pid(self):
        return os.getpid()


async def _give_up_after(ls, seconds):
    """Acquire, giving up after ``seconds``; a grant in time is released at once."""
    try:
        acquisition = await asyncio.wait_for(ls.async_acquire(), seconds)
    except asyncio.TimeoutError:
        return "gave up"
    acquisition.release()
    return "granted"


def _nothing_held(ls):
    state = ls.keeper_state()
    return state["in_use"] == {"slot": 0} and state["holders"] == {} and state["waiting"] == 0


@ray.remote(num_cpus=0)
class AsyncUser:
    def __init__(self, ls):
        self.ls = ls

    async def take(self):
        async with await self.ls.async_acquire(timeout=20) as acq:
            return acq.granted_at

    async def give_up_after(self, seconds):
        return await _give_up_after(self.ls, seconds)

    async def ping(self):
        return "pong"


def test_driver_and_actors_see_one_limiter():
    ls = _ray_set([ResourceLimit("slot", 1)])
    held = ls.acquire()
    user = User.remote(ls)
    pending = user.take.remote()
    _waiting(ls, 1)  # the actor waits in the keeper's queue, holding nothing
    assert ray.wait([pending], timeout=0)[0] == []
    released_at = time.monotonic()
    held.release()
    assert ray.get(pending, timeout=20) >= released_at  # granted only after the driver's release
    # three actors and the driver take the single unit in turn: the holds never overlap
    users = [User.remote(ls) for _ in range(3)]
    runs = [u.intervals.remote(15) for u in users]
    mine = []
    for _ in range(15):
        with ls.acquire(timeout=20) as acq:
            mine.append((acq.granted_at, time.monotonic()))
    holds = sorted(mine + [h for run in ray.get(runs, timeout=40) for h in run])
    assert len(holds) == 60
    for (_, end), (start, _) in itertools.pairwise(holds):
        assert start >= end
    for u in [user, *users]:
        ray.kill(u)


def test_multi_key_grants_are_atomic_and_never_deadlock():
    ls = _ray_set([ResourceLimit("a", 1), ResourceLimit("b", 1)])
    held_a = ls.acquire({"a": 1, "b": 0})
    user = User.remote(ls)
    pending = user.take.remote({"a": 1, "b": 1})
    _waiting(ls, 1)
    assert ls.keeper_state()["in_use"] == {"a": 1, "b": 0}  # the waiter holds no b while it waits
    held_a.release()
    ray.get(pending, timeout=20)
    # crossing requests over overlapping keys, from two actors and the driver: all finish
    users = [User.remote(ls) for _ in range(2)]
    runs = [users[0].intervals.remote(30, {"a": 1, "b": 1}), users[1].intervals.remote(30, {"b": 1, "a": 0})]
    for _ in range(30):
        with ls.acquire({"a": 1, "b": 0}, timeout=20):
            pass
    assert [len(r) for r in ray.get(runs, timeout=40)] == [30, 30]
    # (the actors' last releases are fire-and-forget: they may still be on their way)
    _until(lambda: ls.keeper_state()["in_use"] == {"a": 0, "b": 0})
    for u in [user, *users]:
        ray.kill(u)


@pytest.mark.timeout(90)
def test_rate_accuracy_with_2_contending_actors():
    spec = {  # about 20 grants a second each: what this small shared machine serves steadily
        "token_bucket": (4, 0.2),
        "gcra": (4, 0.2),
        "leaky_bucket": (4, 0.2),
        "fixed_window": (8, 0.4),
        "sliding_window": (8, 0.4),
    }
    sets = {a: _ray_set([RateLimit(a, c, w, a)]) for a, (c, w) in spec.items()}
    users = [User.remote() for _ in range(2)]
    ray.get([u.warm.remote(sets) for u in users], timeout=30)  # both started, known to the keepers
    until = time.monotonic() + 3.0
    results = ray.get([u.contend.remote(sets, until) for u in users], timeout=60)
    for a, (capacity, window) in spec.items():
        per_actor = [r[a] for r in results]
        assert all(per_actor), f"{a}: an actor got nothing"
        grants = per_actor[0] + per_actor[1]
        check_bound(a, capacity, window, grants)
        got, allowed = throughput(a, capacity, window, grants, until)
        # every grant is a round trip to the keeper: a loaded 2-core machine serves a little less
        assert 0.75 * allowed <= got <= allowed + 1e-6, (a, got, allowed)
    for u in users:
        ray.kill(u)


def test_try_acquire_refuses_without_waiting():
    ls = _ray_set([ResourceLimit("slot", 1), RateLimit("tokens", 5, 3600)])
    held = ls.acquire()
    user = User.remote(ls)
    assert ray.get(user.try_take.remote(), timeout=20) is False
    assert ls.try_acquire().successful is False
    held.release()
    with ls.try_acquire({"tokens": 5}) as acq:
        assert acq.successful
    assert ls.try_acquire({"tokens": 1}).successful is False  # the rate limit refuses now
    ray.kill(user)


def test_async_acquire_in_an_async_actor_leaves_its_loop_free():
    ls = _ray_set([ResourceLimit("slot", 1)])
    held = ls.acquire()
    user = AsyncUser.remote(ls)
    pending = user.take.remote()
    _waiting(ls, 1)
    assert ray.get(user.ping.remote(), timeout=20) == "pong"  # the actor's loop runs meanwhile
    assert ray.wait([pending], timeout=0)[0] == []
    held.release()
    ray.get(pending, timeout=20)
    # a caller that gives up (cancelled) leaves the queue; a grant it missed is given back
    held = ls.acquire()
    assert ray.get(user.give_up_after.remote(0.2), timeout=20) == "gave up"
    held.release()
    with ls.acquire(timeout=10):
        pass
    _until(lambda: _nothing_held(ls))
    ray.kill(user)


def test_a_grant_whose_caller_gave_up_before_it_was_delivered_goes_back():
    """The keeper's acquire is cancelled (its caller gave up) just after the wait inside it was
    granted and before the acquire resumed: the caller never sees that grant, so the keeper
    returns the units. The keeper is driven directly on one event loop, so the moment is exact."""

    async def main():
        keeper = LimitKeeper((ResourceLimit("slot", 1),))
        request, mask = keeper._set._compile(None)
        assert await keeper.acquire(_dumps((request, mask, None, "first", 0, 0))) is not None
        second = asyncio.ensure_future(keeper.acquire(_dumps((request, mask, None, "second", 0, 0))))
        while (await keeper.state("test", 0))["waiting"] == 0:
            await asyncio.sleep(0)
        await keeper.release(_dumps((request, "first")))
        while (await keeper.state("test", 0))["in_use"]["slot"] == 0:  # until the wait is granted
            await asyncio.sleep(0)
        assert not second.done()  # granted inside, not yet resumed: the moment to give up
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        state = await keeper.state("test", 0)
        assert state["in_use"] == {"slot": 0} and state["holders"] == {}
        assert await keeper.acquire(_dumps((request, mask, _TRY, "third", 0, 0))) is not None

    asyncio.run(main())


def test_a_request_withdrawn_before_it_arrives_or_while_it_waits_is_answered_none():
    """A caller that gives up sends ``withdraw`` with the request's number. The keeper (driven
    directly on one event loop) answers that request None whether the withdrawal came first
    (an async actor may run calls out of order) or while it waited; nothing is held after."""

    async def main():
        keeper = LimitKeeper((ResourceLimit("slot", 1),))
        request, mask = keeper._set._compile(None)
        await keeper.withdraw(_dumps((7, "late")))  # before its acquire came: it will answer None
        assert await keeper.acquire(_dumps((request, mask, None, "late", 1, 7))) is None
        assert await keeper.acquire(_dumps((request, mask, None, "holder", 0, 0))) is not None
        waiting = asyncio.ensure_future(keeper.acquire(_dumps((request, mask, None, "quitter", 0, 3))))
        while (await keeper.state("test", 0))["waiting"] == 0:
            await asyncio.sleep(0)
        await keeper.withdraw(_dumps((3, "quitter")))
        assert await asyncio.wait_for(waiting, 10) is None
        state = await keeper.state("test", 0)
        assert state["waiting"] == 0 and state["holders"] == {"holder": {0: 1}}
        await keeper.release(_dumps((request, "holder")))
        assert (await keeper.state("test", 0))["in_use"] == {"slot": 0}

    asyncio.run(main())


def test_a_driver_that_gives_up_on_its_acquires_leaves_nothing_held():
    """Giving up (a timeout around async_acquire) either withdraws a waiting request or, when the
    grant was already on its way, gives it back: either way the keeper ends with nothing in use
    and nobody waiting, and the next acquire is served."""
    ls = _ray_set([ResourceLimit("slot", 1)])
    # the slot is free: the grant is on its way when the caller gives up, about a round trip
    # too soon (the answer of a call Ray was told to cancel could come back as cancelled)
    outcomes = [asyncio.run(_give_up_after(ls, seconds)) for seconds in [0.0005, 0.001, 0.0015, 0.002] * 10]
    assert "gave up" in outcomes
    _until(lambda: _nothing_held(ls))
    # the slot is held: the requests wait, and are withdrawn
    held = ls.acquire()
    assert [asyncio.run(_give_up_after(ls, 0.05)) for _ in range(5)] == ["gave up"] * 5
    _until(lambda: ls.keeper_state()["waiting"] == 0)
    held.release()
    with ls.acquire(timeout=10):
        pass
    _until(lambda: _nothing_held(ls))


def test_an_actor_giving_up_just_as_the_slot_frees_never_keeps_it():
    """The actor gives up on its acquire at about the moment the driver's release grants it. The
    grant is either withdrawn in time or given back: the slot is never lost. (With ray.cancel
    for giving up, Ray failed the answer of a call the keeper had just granted as cancelled, and
    the slot stayed taken: within 5 rounds every time.)"""
    ls = _ray_set([ResourceLimit("slot", 1)])
    user = AsyncUser.remote(ls)
    assert ray.get(user.ping.remote(), timeout=20) == "pong"
    outcomes = []
    # release from 5 ms before to 5 ms after it gives up; last, once well after (it gives up
    # then even if its calls start late on a loaded machine)
    for release_at in [0.1 + (i % 11 - 5) * 0.001 for i in range(40)] + [0.3]:
        held = ls.acquire(timeout=10)
        answer = user.give_up_after.remote(0.1)
        time.sleep(release_at)
        held.release()
        outcomes.append(ray.get(answer, timeout=20))
    assert "gave up" in outcomes
    with ls.acquire(timeout=10):
        pass
    _until(lambda: _nothing_held(ls))
    ray.kill(user)


def test_async_acquire_in_the_driver():
    ls = _ray_set([ResourceLimit("slot", 1)])

    async def main():
        held = await ls.async_acquire()
        waiter = asyncio.ensure_future(ls.async_acquire(timeout=10))
        # this loop keeps running while the waiter waits (a blocking wait would hang it here)
        while ls.keeper_state()["waiting"] == 0:
            await asyncio.sleep(0.01)
        assert not waiter.done()
        held.release()
        async with await waiter:
            pass

    asyncio.run(main())
    _until(lambda: ls.keeper_state()["in_use"] == {"slot": 0})  # (the release is fire-and-forget)


def test_many_concurrent_waiters_are_all_served():
    ls = _ray_set([ResourceLimit("slot", 1)])
    n = 300  # more than a local set's queue places

    async def one(served):
        async with await ls.async_acquire(timeout=30):
            served.append(1)

    async def main():
        held = await ls.async_acquire()
        served: list = []
        tasks = [asyncio.ensure_future(one(served)) for _ in range(n)]
        while ls.keeper_state()["waiting"] < n:
            await asyncio.sleep(0.05)
        assert served == []
        held.release()
        await asyncio.wait_for(asyncio.gather(*tasks), 40)
        return len(served)

    assert asyncio.run(main()) == n


def test_update_corrects_rate_usage():
    ls = _ray_set([RateLimit("tokens", 100, 3600)])
    with ls.acquire({"tokens": 100}) as acq:
        acq.update(usage={"tokens": 30})  # 70 come back
    assert ls.try_acquire({"tokens": 70}).successful
    assert not ls.try_acquire({"tokens": 1}).successful
    with pytest.raises(ValueError, match="after the acquisition was released"):
        acq.update(usage={"tokens": 1})


def test_timeout_raises_in_the_driver_and_in_an_actor():
    ls = _ray_set([ResourceLimit("slot", 1)])
    held = ls.acquire()
    user = User.remote(ls)
    assert isinstance(ray.get(user.take.remote(None, 0.2), timeout=20), TimeoutError)
    with pytest.raises(TimeoutError):
        ls.acquire(timeout=0.1)
    assert ls.keeper_state()["waiting"] == 0  # the timed-out waiters left the queue
    held.release()
    ray.kill(user)


def test_units_of_a_killed_holder_come_back():
    ls = _ray_set([ResourceLimit("db", 3)])
    holder = User.remote(ls)
    ray.get(holder.hold.remote({"db": 2}), timeout=20)
    assert not ls.try_acquire({"db": 2}).successful
    # a waiter killed while queued blocks nobody either
    waiter = User.remote(ls)
    queued = waiter.take.remote({"db": 3})
    _waiting(ls, 1)
    ray.kill(holder)
    ray.kill(waiter)
    with ls.acquire({"db": 3}, timeout=20):  # the dead holder's 2 units are back
        pass
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(queued, timeout=20)
    _until(lambda: ls.keeper_state()["holders"] == {})


def test_a_callers_release_counts_before_its_next_call():
    """Ray runs an async actor's calls out of order. Each acquire carries how many fire-and-forget
    calls (release, update) its process sent before it; the keeper runs it after those."""
    ls = _ray_set([ResourceLimit("slot", 1)])
    keeper, (request, mask) = ls._store.keeper(), ls._compile(None)
    assert ray.get(keeper.acquire.remote(_dumps((request, mask, None, "X", 0, 0))), timeout=20) is not None
    # caller X released, then tried again; the try reaches the keeper first
    tried = keeper.acquire.remote(_dumps((request, mask, _TRY, "X", 1, 1)))
    assert ray.wait([tried], timeout=0.2)[0] == []  # held back until X's release has run
    keeper.release.remote(_dumps((request, "X")))
    assert ray.get(tried, timeout=20) is not None  # granted: X's own release came first


def test_pickled_copies_share_the_keeper():
    ls = _ray_set([ResourceLimit("slot", 1)], config={"region": "eu"})
    copy = pickle.loads(pickle.dumps(ls))  # before first use: the keeper is made for it
    assert copy.mode == "ray" and copy.shared and copy.config == {"region": "eu"}
    with copy.acquire() as acq:
        assert acq.config == {"region": "eu"}
        assert not ls.try_acquire().successful
    assert ls.try_acquire().successful  # released through the copy, seen through the original


@pytest.mark.timeout(90)
def test_the_keeper_goes_with_the_driver_that_made_it():
    """Not detached: the keeper's process ends when its set is dropped, and when the driver that
    made it disconnects (here another driver joining this cluster, holding a unit)."""
    ls = _ray_set([ResourceLimit("slot", 1)])
    pid = ls.keeper_state()["pid"]
    del ls
    _until(lambda: not process_alive(pid), timeout=20)
    script = (
        "import sys, ray\n"
        "from concurry import LimitSet, ResourceLimit\n"
        "ray.init(address=sys.argv[1], log_to_driver=False)\n"
        "ls = LimitSet([ResourceLimit('slot', 1)], shared=True, mode='ray')\n"
        "ls.acquire()\n"
        "print(ls.keeper_state()['pid'])\n"
        "ray.shutdown()\n"
    )
    address = ray.get_runtime_context().gcs_address
    out = subprocess.run([sys.executable, "-c", script, address], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    _until(lambda: not process_alive(int(out.stdout.split()[-1])), timeout=20)


def test_bad_input_fails_before_any_round_trip(caplog):
    ls = _ray_set([ResourceLimit("slot", 2), RateLimit("tokens", 10, 1)])
    with pytest.raises(ValueError, match="more than the limit's capacity"):
        ls.acquire({"tokens": 11})
    with pytest.raises(TypeError, match="requested"):
        ls.try_acquire({"tokens": 1.5})
    with pytest.raises(ValueError, match="timeout"):
        ls.acquire(timeout=-1)
    assert ls._store._handle is None  # refused here: the keeper was not even made
    with caplog.at_level(logging.WARNING, logger="concurry"):
        for _ in range(3):
            with ls.acquire({"tokenz": 1}):
                pass
    assert sum("tokenz" in r.getMessage() for r in caplog.records) == 1
    acq = ls.acquire()
    config = acq.config
    config["x"] = 1
    assert acq.config == {}
    acq.release()


def test_limit_pool_of_ray_sets():
    pool = LimitPool([_ray_set([ResourceLimit("slot", 1)], config={"key": k}) for k in "AB"])
    user = User.remote()
    configs = {ray.get(user.hold.remote(None, pool), timeout=20)["key"]}
    with pool.try_acquire() as acq:  # one set is held by the actor: the other one grants
        assert acq.successful
        configs.add(acq.config["key"])
        assert not pool.try_acquire().successful
    assert configs == {"A", "B"}
    ray.get(user.release.remote(), timeout=20)
    ray.kill(user)


class Plain:
    def hello(self):
        return "hi"


def test_which_worker_modes_a_shared_set_serves():
    ray_set = _ray_set([ResourceLimit("slot", 1)])
    with pytest.raises(ValueError, match=r"mode='ray'.*mode='process' worker"):
        worker(Plain).options(mode="process", limits=ray_set).init()
    for mode in ("thread", "process"):
        other = LimitSet([ResourceLimit("slot", 1)], shared=True, mode=mode)
        with pytest.raises(ValueError, match=rf"mode='{mode}'.*mode='ray' worker.*mode='ray'\)"):
            worker(Plain).options(mode="ray", limits=other).init()
    for mode in ("thread", "asyncio"):  # workers in this process
        calls = _ray_set([CallLimit(3, 3600)])
        w = worker(Plain).options(mode=mode, limits=calls).init()
        try:
            assert [w.hello().result(timeout=20) for _ in range(3)] == ["hi"] * 3
            assert not calls.try_acquire().successful  # each call took a unit of the ray set
        finally:
            w.stop()


def test_without_ray_the_error_says_how_to_install_it():
    script = (
        "import sys; sys.modules['ray'] = None\n"
        "import concurry\n"
        "assert 'ray' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "try:\n"
        "    concurry.LimitSet([concurry.ResourceLimit('a', 1)], shared=True, mode='ray')\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "pip install 'concurry[ray]'" in out.stdout


def test_import_concurry_does_not_import_ray():
    script = "import sys, concurry; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "False", out.stderr
