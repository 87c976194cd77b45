"""``mode="ray"``: a worker's overhead against raw Ray doing the same, in the same run.

Rows (the two sides alternate, round by round, on one local Ray; the best round of each counts):
- 2,000 no-op calls then ``concurry.wait`` on them  vs ``actor.noop.remote()`` x 2,000 + ``ray.get``: <= 1.2x.
  The row's name also gives raw Ray with a no-op ``ref.future()`` callback on each call: what
  completing each future by Ray's callback costs by itself (ray-mode futures are completed so).
- one call and its result, repeated                vs ``ray.get(actor.noop.remote())``: <= 1.2x
- worker start to first result, then stop          vs ``ray.remote(Cls).remote()``, ``ray.get`` of the
  first call, ``ray.kill``: <= 1.2x
- ``LimitSet(shared=True, mode="ray")`` with one RateLimit + one ResourceLimit, acquire+release from
  an actor (one round trip to the keeper actor for the acquire, a fire-and-forget call for the
  release) vs one raw ``ray.get(actor.noop.remote())`` to a no-op actor, both timed inside the same
  actor: reported. The row's name also gives raw calls to an async actor (the keeper is one): a
  call, and a call plus a fire-and-forget call (the same two calls an acquire+release makes).
Without Ray installed there are no rows. Uses the running Ray if there is one, else starts a small
local one (bound to 127.0.0.1, in its own temp dir) and shuts it down at the end. concurry's
bytecode is written first, as an installed copy has it (``_compile_package``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any

from common import Row, best_of, timed

TITLE = "Ray: worker call overhead and start, shared limits, against raw Ray"

BATCH_CALLS = 2_000
ROUND_TRIPS = 300
STARTS = 6
LIMIT_CALLS = 1_000
ROUNDS = 15
QUICK = {"BATCH_CALLS": 500, "ROUND_TRIPS": 100, "STARTS": 2, "LIMIT_CALLS": 200, "ROUNDS": 2}


class Noop:
    def noop(self) -> None:
        return None


# ---- calls ----


def _batch(submit: Any, wait_all: Any) -> float:
    return timed(lambda: wait_all([submit() for _ in range(BATCH_CALLS)]), BATCH_CALLS)


def _round_trips(call: Any) -> float:
    def body() -> None:
        for _ in range(ROUND_TRIPS):
            call()

    return timed(body, ROUND_TRIPS)


def calls(ray: Any) -> tuple[tuple[float, float, float], tuple[float, float]]:
    """Seconds per call: (ours, raw, raw with a callback on each ref) for the batch row, and
    (ours, raw) for the round-trip row."""
    import concurry
    from concurry import worker

    w = worker(Noop).options(mode="ray").init()
    actor = ray.remote(Noop).remote()
    ours_call, raw_call = w.noop, actor.noop.remote

    def raw_call_watched() -> Any:
        # a ray-mode future is completed by Ray's own callback on its ref (no polling): this is
        # that cost alone, on raw Ray
        ref = raw_call()
        ref.future().add_done_callback(_ignore)
        return ref

    try:
        concurry.wait([ours_call() for _ in range(200)])  # warm: both actors up, both paths run
        ray.get([raw_call() for _ in range(200)])
        batch: tuple[list[float], list[float], list[float]] = ([], [], [])
        trips: tuple[list[float], list[float]] = ([], [])
        for _ in range(ROUNDS):
            batch[0].append(best_of(lambda: _batch(ours_call, concurry.wait), repeat=1))
            batch[1].append(best_of(lambda: _batch(raw_call, ray.get), repeat=1))
            batch[2].append(best_of(lambda: _batch(raw_call_watched, ray.get), repeat=1))
            trips[0].append(best_of(lambda: _round_trips(lambda: ours_call().result()), repeat=1))
            trips[1].append(best_of(lambda: _round_trips(lambda: ray.get(raw_call())), repeat=1))
    finally:
        w.stop()
        ray.kill(actor)
    return (min(batch[0]), min(batch[1]), min(batch[2])), (min(trips[0]), min(trips[1]))


def _ignore(_: Any) -> None:
    return None


# ---- starting ----


def starts(ray: Any) -> tuple[float, float]:
    """(ours, raw) seconds from asking for a worker to its first result, stop included."""
    from concurry import worker

    cls = worker(Noop)
    remote = ray.remote(Noop)

    def ours() -> None:
        w = cls.options(mode="ray").init()
        w.noop().result()
        w.stop()

    def raw() -> None:
        actor = remote.remote()
        ray.get(actor.noop.remote())
        ray.kill(actor)

    ours()  # warm: both actor classes exported to Ray
    raw()
    mine, base = [], []
    for _ in range(STARTS):
        mine.append(best_of(lambda: timed(ours, 1), repeat=1))
        base.append(best_of(lambda: timed(raw, 1), repeat=1))
    return min(mine), min(base)


# ---- shared limits ----


def limits(ray: Any) -> tuple[float, float, float, float]:
    """(ours, raw call, raw async call, raw async call + fire-and-forget call), per op."""
    from concurry import LimitSet, RateLimit, ResourceLimit

    @ray.remote(num_cpus=0)
    class AsyncNoop:
        async def noop(self) -> None:
            return None

    @ray.remote(num_cpus=0)
    class Caller:
        def limits(self, limit_set: Any, n: int) -> float:
            acquire, request = limit_set.acquire, {"tokens": 1}
            for _ in range(20):  # warm: the keeper knows this holder
                with acquire(request):
                    pass
            start = time.perf_counter()
            for _ in range(n):
                with acquire(request):
                    pass
            return (time.perf_counter() - start) / n

        def raw(self, target: Any, n: int, fire: bool = False) -> float:
            """``n`` no-op calls to ``target``, each waited for (and, with ``fire``, each followed
            by a second, fire-and-forget no-op call: the shape of our acquire and release)."""
            call = target.noop.remote
            ray.get([call() for _ in range(20)])
            start = time.perf_counter()
            for _ in range(n):
                ray.get(call())
                if fire:
                    call()
            ray.get(call())
            return (time.perf_counter() - start) / n

    limit_set = LimitSet(
        [RateLimit("tokens", 10**9, 1.0), ResourceLimit("slots", 2)], shared=True, mode="ray"
    )
    caller = Caller.remote()
    noop = ray.remote(num_cpus=0)(Noop).remote()
    async_noop = AsyncNoop.remote()
    try:
        ours, raw, raw_async, raw_pair = [], [], [], []
        for _ in range(3):  # alternate the sides; keep the best of each
            ours.append(ray.get(caller.limits.remote(limit_set, LIMIT_CALLS)))
            raw.append(ray.get(caller.raw.remote(noop, LIMIT_CALLS)))
            raw_async.append(ray.get(caller.raw.remote(async_noop, LIMIT_CALLS)))
            raw_pair.append(ray.get(caller.raw.remote(async_noop, LIMIT_CALLS, True)))
    finally:
        for actor in (caller, noop, async_noop):
            ray.kill(actor)
    return min(ours), min(raw), min(raw_async), min(raw_pair)


def _rows(ray: Any) -> list[Row]:
    (batch, batch_raw, batch_watched), (trip, trip_raw) = calls(ray)
    start, start_raw = starts(ray)
    mine, base, base_async, base_pair = limits(ray)
    return [
        Row(
            f"ray, {BATCH_CALLS:,} no-op calls then wait all (raw Ray with a ref.future() callback on "
            f"each call: {batch_watched * 1e6:,.0f} us, {batch_watched / batch_raw:.2f}x)",
            batch,
            "raw Ray: .remote() each, ray.get(refs)",
            batch_raw,
            budget="<= 1.2x",
            ok=batch <= 1.2 * batch_raw,
        ),
        Row(
            f"ray, one call and wait, {ROUND_TRIPS} times",
            trip,
            "raw Ray: ray.get(actor.noop.remote())",
            trip_raw,
            budget="<= 1.2x",
            ok=trip <= 1.2 * trip_raw,
        ),
        Row(
            "ray, worker start to first result, then stop",
            start,
            "raw Ray: actor, ray.get(first call), ray.kill",
            start_raw,
            unit="ms/worker",
            budget="<= 1.2x",
            ok=start <= 1.2 * start_raw,
        ),
        Row(
            f"ray LimitSet, rate + resource, acquire+release from an actor, {LIMIT_CALLS:,} times "
            f"(raw calls to an async actor: one {base_async * 1e6:,.0f} us, one + one "
            f"fire-and-forget {base_pair * 1e6:,.0f} us)",
            mine,
            "raw Ray actor call, no-op, ray.get",
            base,
            unit="us/op",
            budget="report",
        ),
    ]


def _compile_package() -> None:
    """Write concurry's bytecode, as pip does when it installs the package: a new actor imports
    concurry, and from source alone (``PYTHONDONTWRITEBYTECODE``, a checkout never installed)
    that takes 4x as long (57 against 13 ms measured in an actor), which the start row would
    count against us though no installed copy pays it."""
    import compileall

    import concurry

    compileall.compile_dir(os.path.dirname(concurry.__file__), quiet=1)


def run() -> list[Row]:
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # read when Ray is imported
    _compile_package()
    try:
        import ray
    except ImportError:
        return []
    if ray.is_initialized():  # someone's Ray (another module of this run, or the caller's): reuse it
        return _rows(ray)
    temp_dir = tempfile.mkdtemp(prefix="cl-bench-ray-", dir="/tmp")
    ray.init(
        num_cpus=2,
        object_store_memory=200_000_000,
        include_dashboard=False,
        _temp_dir=temp_dir,
        log_to_driver=False,
    )
    try:
        return _rows(ray)
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    from common import print_table

    print_table(TITLE, run())
