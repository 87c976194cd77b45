"""Ray-shared limits: acquire+release from a Ray actor, against a raw Ray actor call.

Row (both sides timed inside the same actor, in the same run):
- ``LimitSet(shared=True, mode="ray")`` with one RateLimit + one ResourceLimit, acquire+release
  (one round trip to the keeper actor for the acquire, a fire-and-forget call for the release)
  vs one raw ``ray.get(actor.noop.remote())`` to a no-op actor: reported (no budget yet). The
  row's name also gives raw calls to an async actor (the keeper is one): a call, and a call plus
  a fire-and-forget call (the same two calls an acquire+release makes).
Without Ray installed there are no rows. Starts a small local Ray if none is running.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from common import Row

TITLE = "Ray limits: shared LimitSet acquire+release from an actor"

N = 2_000


def _rows(ray) -> list[Row]:
    from concurry import LimitSet, RateLimit, ResourceLimit

    @ray.remote(num_cpus=0)
    class Noop:
        def noop(self) -> None:
            return None

    @ray.remote(num_cpus=0)
    class AsyncNoop:
        async def noop(self) -> None:
            return None

    @ray.remote(num_cpus=0)
    class Caller:
        def limits(self, limit_set, n: int) -> float:
            acquire, request = limit_set.acquire, {"tokens": 1}
            for _ in range(20):  # warm: the keeper knows this holder
                with acquire(request):
                    pass
            start = time.perf_counter()
            for _ in range(n):
                with acquire(request):
                    pass
            return (time.perf_counter() - start) / n

        def raw(self, target, n: int, fire: bool = False) -> float:
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

    limits = [RateLimit("tokens", 10**9, 1.0), ResourceLimit("slots", 2)]
    limit_set = LimitSet(limits, shared=True, mode="ray")
    caller, noop, async_noop = Caller.remote(), Noop.remote(), AsyncNoop.remote()
    try:
        ours, raw, raw_async, raw_pair = [], [], [], []
        for _ in range(3):  # alternate the sides; keep the best of each
            ours.append(ray.get(caller.limits.remote(limit_set, N)))
            raw.append(ray.get(caller.raw.remote(noop, N)))
            raw_async.append(ray.get(caller.raw.remote(async_noop, N)))
            raw_pair.append(ray.get(caller.raw.remote(async_noop, N, True)))
    finally:
        for actor in (caller, noop, async_noop):
            ray.kill(actor)
    mine, base, base_async, base_pair = min(ours), min(raw), min(raw_async), min(raw_pair)
    return [
        Row(
            f"ray LimitSet, rate + resource, acquire+release from an actor, {N:,} times (raw calls "
            f"to an async actor: one {base_async * 1e6:,.0f} us, one + one fire-and-forget "
            f"{base_pair * 1e6:,.0f} us)",
            mine,
            "raw Ray actor call, no-op, ray.get",
            base,
            unit="us/op",
            budget="report",
        )
    ]


def run() -> list[Row]:
    try:
        import ray
    except ImportError:
        return []
    if ray.is_initialized():
        return _rows(ray)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
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
