"""README-style usage that must pass mypy (with concurry's plugin): checked by tests/test_typing.py.

Never run; only type-checked. ``assert_type`` pins what the checker believes.
"""

import asyncio
import concurrent.futures as cf
from typing import Any

from pydantic import BaseModel
from typing_extensions import assert_type

from concurry import (
    AsyncioFuture,
    BaseFuture,
    ConcurrentFuture,
    Executor,
    SyncFuture,
    TaskWorker,
    Worker,
    gather,
    task,
    wait,
    worker,
    wrap_future,
)
from concurry.proxy import WorkerHandle


@worker(mode="thread")
class Counter:
    def __init__(self, start: int = 0):
        self.count = start

    def add(self, n: int) -> int:
        self.count += n
        return self.count


@worker
class Plain:
    def ping(self) -> str:
        return "pong"


class Subclassed(Worker):
    def __init__(self, base: int) -> None:
        self.base = base

    def plus(self, n: int) -> int:
        return self.base + n


class Derived(Counter):  # subclassing a decorated class keeps working
    pass


@worker(mode="thread")
class Model(BaseModel):
    x: int


class ModelWorker(Worker, BaseModel):
    x: int


class Helper:
    def double(self, n: int) -> int:
        return 2 * n


def workers() -> None:
    with Counter.init(10) as c:
        assert_type(c, WorkerHandle)
        futures = [c.add(1) for _ in range(5)]
        print([f.result() for f in futures])
    handle = Counter.options(mode="process").init(10)
    assert_type(handle, WorkerHandle)
    handle.stop()
    direct = Counter(10)  # calling the class creates a worker too: a handle, not a Counter
    assert_type(direct, WorkerHandle)
    direct.stop(timeout=5)
    assert_type(Plain.init(), WorkerHandle)
    assert_type(Plain.options(mode="sync").options(blocking=True).init(), WorkerHandle)
    assert_type(Subclassed(1), WorkerHandle)
    assert_type(Subclassed.options(mode="thread").init(1), WorkerHandle)
    assert_type(Derived(3), WorkerHandle)
    assert_type(Derived.init(3), WorkerHandle)
    assert_type(Model(x=1), WorkerHandle)
    assert_type(ModelWorker.options(mode="sync").init(x=1), WorkerHandle)
    assert_type(worker(Helper)(), WorkerHandle)  # the decorator called as a function
    assert_type(worker(mode="thread")(Helper).init(), WorkerHandle)


def futures() -> None:
    f = wrap_future(41)
    assert_type(f, SyncFuture[int])
    n: int = f.result() + 1
    print(n)
    assert_type(wrap_future(f), SyncFuture[int])
    pool_future: cf.Future[str] = cf.ThreadPoolExecutor().submit(str, 1)
    assert_type(wrap_future(pool_future), ConcurrentFuture[str])
    any_future: BaseFuture[int] = f
    assert_type(any_future.result(timeout=1), int)
    assert_type(any_future.exception(), BaseException | None)
    any_future.add_done_callback(lambda done: print(done.result()))
    assert_type(SyncFuture(exception=KeyError("k")), SyncFuture[Any])


async def awaiting(loop_future: "asyncio.Future[bytes]") -> None:
    wrapped = wrap_future(loop_future)
    assert_type(wrapped, AsyncioFuture[bytes])
    assert_type(await wrapped, bytes)
    assert_type(await wrap_future(3), int)


def waiting() -> None:
    fs = [wrap_future(i) for i in range(3)]
    assert_type(gather(fs), list[Any])
    assert_type(gather({"a": fs[0], "b": 2}), dict[str, Any])
    for key, value in gather(fs, iter=True, timeout=5):
        print(key, value)
    done, not_done = wait(fs, timeout=1, return_when="first")
    assert_type(done, set[Any])
    assert_type(not_done, set[Any])


@task(mode="thread", max_workers=4)
def square(x: int) -> int:
    return x * x


@task
def shout(word: str) -> str:
    return word.upper()


def tasks() -> None:
    print(list(square.map(range(5))))
    assert_type(list(square.map(range(5))), list[int])
    print(square(3).result(), square.submit(x=4), shout("hi"))
    square.stop()
    with Executor(mode="thread", max_workers=2) as ex:
        future = ex.submit(pow, 2, 10)
        print(future.result())
        assert_type(list(ex.map(str, [1, 2])), list[str])
        ex.shutdown(wait=True)
    tw = TaskWorker.options(mode="process").init()
    assert isinstance(tw, cf.Executor)
    asyncio.get_event_loop().run_in_executor(tw, print, "from an executor")
    tw.stop()
