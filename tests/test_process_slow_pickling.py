"""An argument that is slow to pickle delays only its own call (issue 10, item 12): in a
process pool with a queue cap, other callers' submissions and other workers' calls go on.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading

import pytest

from concurry import worker

PICKLING = threading.Event()
PICKLED = threading.Event()  # set by the test: pickling may end
DONE = threading.Event()  # set once the slow pickling has ended


class SlowToPickle:
    """Takes ``seconds`` to pickle, in the process that pickles it (the caller's)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __reduce__(self):
        PICKLING.set()
        PICKLED.wait(self.seconds)  # the test ends the wait early once it has seen enough
        DONE.set()
        return (SlowToPickle, (self.seconds,))


class Echo:
    def echo(self, value):
        return type(value).__name__

    def pid(self) -> int:
        return os.getpid()


@pytest.mark.timeout(60)
def test_slow_argument_does_not_block_other_callers_or_workers():
    PICKLING.clear()
    PICKLED.clear()
    DONE.clear()
    pool = worker(Echo).options(mode="process", max_workers=2).init()  # default queue cap
    try:
        pids = {pool.pid().result(timeout=30) for _ in range(4)}
        assert len(pids) == 2
        slow: list = []
        caller = threading.Thread(target=lambda: slow.append(pool.echo(SlowToPickle(10.0))))
        caller.start()
        assert PICKLING.wait(30)
        # while that argument is being pickled: other submissions return and other calls finish
        others = [pool.pid() for _ in range(8)]
        cf.wait(others, timeout=3)  # those queued behind the slow call on its worker wait
        finished_meanwhile = {f.result() for f in others if f.done()}
        assert not DONE.is_set(), "submissions waited for another call's argument to be pickled"
        assert finished_meanwhile, "no call finished while one argument was being pickled"
        PICKLED.set()
        caller.join(30)
        assert slow[0].result(timeout=30) == "SlowToPickle"
        assert {f.result(timeout=30) for f in others} <= pids
    finally:
        PICKLED.set()
        pool.stop()


@pytest.mark.timeout(60)
def test_pool_call_whose_argument_cannot_be_pickled_fails_alone():
    pool = worker(Echo).options(mode="process", max_workers=2).init()
    try:
        calls = [pool.echo(threading.Lock() if i % 3 == 0 else [i]) for i in range(9)]
        for i, future in enumerate(calls):
            if i % 3 == 0:
                with pytest.raises(TypeError, match=r"Echo\.echo: argument .*lock.* cannot be pickled"):
                    future.result(timeout=30)
            else:
                assert future.result(timeout=30) == "list"
        assert pool.echo((1,)).result(timeout=30) == "tuple"
    finally:
        pool.stop()
