"""Round trips on a process worker, from many threads at once (issue 10, item 13): results
always reach the right call; ``result(timeout)`` keeps its timeout; a worker killed while a
caller waits fails that caller promptly; callbacks, ``stop()`` from a callback and ``cf.wait``
keep working. Guards for any change to who reads a worker's outcomes (e.g. the waiting caller
reading them itself instead of the reader thread).
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from concurry import WorkerCrashedError, worker
from conftest import wait_until


class Echo:
    def echo(self, value):
        return value

    def tagged(self, thread: int, index: int, size: int) -> tuple:
        return (thread, index, b"x" * size)

    def pid(self) -> int:
        return os.getpid()

    def block(self, path: str, seconds: float) -> str:
        Path(path).touch()  # tells the test the call has started
        time.sleep(seconds)
        return "done"

    def fail(self, text: str) -> None:
        raise ValueError(text)

    def gated(self, path: str, gate: str) -> str:
        """Mark ``path`` (the call has started), then block until ``gate`` exists (up to 20 s)."""
        Path(path).touch()
        deadline = time.monotonic() + 20
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.005)
        return "done"


EchoWorker = worker(Echo)


@pytest.fixture
def w():
    handle = EchoWorker.options(mode="process").init()
    yield handle
    handle.stop(timeout=10)


@pytest.mark.timeout(60)
def test_many_threads_doing_round_trips_each_get_their_own_results(w):
    threads, rounds = 8, 150
    errors: list = []

    def run(t: int) -> None:
        try:
            for i in range(rounds):
                size = (t * 7919 + i * 104729) % 70_000  # small and large outcomes interleaved
                got = w.tagged(t, i, size).result(timeout=30)
                assert got == (t, i, b"x" * size)
                if i % 10 == 0:
                    assert w.echo(None).exception(timeout=30) is None
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(50)
    assert not any(thread.is_alive() for thread in workers)
    assert errors == []
    assert w.echo("still serving").result(timeout=10) == "still serving"


@pytest.mark.timeout(30)
def test_result_with_a_timeout_on_a_hung_call_times_out_and_the_worker_keeps_serving(w, tmp_path):
    marker, gate = tmp_path / "started", tmp_path / "gate"
    hung = w.gated(str(marker), str(gate))  # held until the test opens the gate
    assert wait_until(marker.exists, timeout=20)
    # a wait that ignored its timeout would return "done" (at the call's 20 s cap), not raise
    with pytest.raises(cf.TimeoutError):
        hung.result(timeout=0.3)
    with pytest.raises(cf.TimeoutError):
        hung.exception(timeout=0.3)
    assert not hung.done()
    gate.touch()
    later = w.echo("after")
    assert later.result(timeout=20) == "after"
    assert hung.result(timeout=0) == "done"  # outcomes stay in order


@pytest.mark.timeout(30)
def test_a_worker_killed_while_a_caller_waits_fails_that_caller_promptly(w, tmp_path):
    pid = w.pid().result(timeout=10)
    marker = tmp_path / "started"
    hung = w.block(str(marker), 30.0)
    assert wait_until(marker.exists, timeout=20)
    threading.Timer(0.3, os.kill, (pid, signal.SIGKILL)).start()
    with pytest.raises(WorkerCrashedError):
        hung.result()  # no timeout: only the crash can end this wait (unseen: the test times out)
    with pytest.raises(WorkerCrashedError):
        w.echo(1)


@pytest.mark.timeout(30)
def test_a_failing_call_raises_in_the_waiting_caller(w):
    with pytest.raises(ValueError, match="nope"):
        w.fail("nope").result(timeout=10)
    assert isinstance(w.fail("again").exception(timeout=10), ValueError)


@pytest.mark.timeout(30)
def test_callbacks_fire_for_calls_a_caller_waits_on(w):
    seen: list = []
    done = threading.Event()
    futures = [w.echo(i) for i in range(50)]
    for future in futures:
        future.add_done_callback(lambda f: seen.append(f.result()))
    futures[-1].add_done_callback(lambda _: done.set())
    assert futures[-1].result(timeout=20) == 49
    assert done.wait(10)
    assert sorted(seen) == list(range(50))


@pytest.mark.timeout(30)
def test_stop_from_a_callback_returns_and_the_call_completes(tmp_path):
    w = EchoWorker.options(mode="process").init()
    pid = w.pid().result(timeout=10)
    future = w.echo("last")
    future.add_done_callback(lambda _: w.stop())
    assert future.result(timeout=20) == "last"
    assert wait_until(lambda: not _alive(pid), timeout=20)


@pytest.mark.timeout(30)
def test_cf_wait_and_as_completed_see_outcomes_while_another_thread_waits_on_its_own(w):
    futures = [w.echo(i) for i in range(200)]
    waiter = threading.Thread(target=lambda: futures[-1].result(timeout=20))
    waiter.start()
    done, not_done = cf.wait(futures, timeout=20)
    assert len(done) == len(futures)
    waiter.join(20)
    assert not not_done
    assert sorted(f.result() for f in cf.as_completed(futures, timeout=20)) == list(range(200))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
