"""Iterators over results hold none once handed over (SPEC §5, §7): a result of ``map`` or
``gather(iter=True)`` that the caller drops is freed at once, as with ``Executor.map`` (CPython's
executor tests check the same with weak references), so a long map over large results does not
keep them all in memory.
"""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

import pytest

from concurry import TaskWorker, async_gather, gather, wait

COUNT = 12



class Blob:
    """A result that can be weakly referenced."""


def make_blob(_: int) -> Blob:
    return Blob()


def _freed(ref: weakref.ref) -> bool:
    """Is the object gone (allowing the worker a moment to finish the call that produced it)?"""
    deadline = time.monotonic() + 1.0
    while True:
        gc.collect()
        if ref() is None:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def _still_alive(results, pairs: bool = False) -> list[int]:
    """Consume ``results`` (values, or ``(key, value)`` pairs) like a caller that drops each
    value; return the position of the first one that stays alive."""
    position = 0  # not enumerate(): its reused result tuple would keep the last value
    for item in results:
        ref = weakref.ref(item[1] if pairs else item)
        del item
        if not _freed(ref):
            return [position]
        position += 1  # noqa: SIM113 (see above)
    return []


@pytest.fixture(params=["sync", "thread", "asyncio", "process", "thread-pool", "process-pool"])
def executor(request):
    mode, _, pool = request.param.partition("-")
    tw = TaskWorker.options(mode=mode, **({"max_workers": 2} if pool else {})).init()
    yield tw
    tw.stop(timeout=10)


@pytest.mark.timeout(60)
def test_map_frees_each_result_once_yielded(executor):
    assert _still_alive(executor.map(make_blob, range(COUNT))) == []


@pytest.mark.timeout(60)
def test_gather_iter_frees_each_result_once_yielded(executor):
    pairs = gather((executor.submit(make_blob, i) for i in range(COUNT)), iter=True)
    assert _still_alive(pairs, pairs=True) == []


@pytest.mark.timeout(60)
def test_gather_iter_of_finished_futures_frees_each_result(executor):
    futures = [executor.submit(make_blob, i) for i in range(COUNT)]
    wait(futures, timeout=30)
    pairs = gather((futures.pop() for _ in range(COUNT)), iter=True)  # gather owns them now
    assert _still_alive(pairs, pairs=True) == []


@pytest.mark.timeout(60)
def test_async_gather_iter_frees_each_result_once_yielded(executor):
    async def consume() -> list[int]:
        futures = (executor.submit(make_blob, i) for i in range(COUNT))
        position = 0
        async for _, value in async_gather(futures, iter=True):
            ref = weakref.ref(value)
            del value
            if not _freed(ref):
                return [position]
            position += 1
        return []

    assert asyncio.run(consume()) == []
