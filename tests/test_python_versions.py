"""Behaviour that once differed between the Pythons the package supports (3.10 to 3.13).

``make test-pythons`` runs the whole suite on each of them; the tests here pin the places
where a version difference used to leak through: how a thread worker counts a call that has
left its queue but not started (``SimpleQueue.put`` hands an item straight to a waiting
``get()`` from 3.13 on), and what a user sees of a process worker's traceback on 3.10, which
has no exception notes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from concurry import ConcurrentFuture, worker
from conftest import wait_until


@worker(mode="thread")
class Squarer:
    def square(self, x: int) -> int:
        return x * x


@pytest.fixture
def first_start_held(monkeypatch):
    """Hold the first call a worker takes between leaving its queue and starting to run.

    That is the window a thread worker is in when ``put`` has handed it a call but the thread
    has not run yet (Python 3.13), made wide and deterministic on every version. Yields
    ``(taken, release)`` events."""
    taken, release = threading.Event(), threading.Event()
    original = ConcurrentFuture.set_running_or_notify_cancel
    first = [True]

    def held_start(self: ConcurrentFuture) -> bool:
        if first[0]:
            first[0] = False
            taken.set()
            release.wait(20)
        return original(self)

    monkeypatch.setattr(ConcurrentFuture, "set_running_or_notify_cancel", held_start)
    yield taken, release
    release.set()


@pytest.mark.timeout(40)
def test_a_call_taken_but_not_started_counts_as_unfinished(first_start_held):
    taken, release = first_start_held
    with Squarer.options(mode="thread", max_workers=2).init() as pool:
        f = pool.square(3)
        assert taken.wait(10)
        counts = sorted(w["unfinished"] for w in pool.pool_stats()["workers"])
        total = pool.pool_stats()["unfinished"]
        release.set()
        assert f.result(timeout=10) == 9
        assert wait_until(lambda: pool.pool_stats()["unfinished"] == 0, timeout=10)
    assert counts == [0, 1] and total == 1


@pytest.mark.timeout(40)
def test_the_queue_cap_counts_a_call_taken_but_not_started(first_start_held):
    """With ``max_queued_tasks=1``, a second call must wait in the pool while the first one is
    in the worker's hands, even before it has started."""
    taken, release = first_start_held
    options = {"max_workers": 2, "max_queued_tasks": 1, "load_balancing": "round_robin"}
    with Squarer.options(mode="thread", **options).init() as pool:
        first = pool.square(2)  # worker 0, held before it starts
        assert taken.wait(10)
        other = pool.square(3)  # worker 1
        second = pool.square(4)  # worker 0 again: must wait in the pool
        stats = pool.pool_stats()["workers"][0]
        release.set()
        assert [f.result(timeout=10) for f in (first, other, second)] == [4, 9, 16]
    assert (stats["in_backend"], stats["waiting"], stats["unfinished"]) == (1, 1, 2)


_FAILING_SCRIPT = textwrap.dedent(
    """
    from concurry import worker

    @worker(mode="process")
    class Parser:
        def parse(self, text):
            return int(text)

    p = Parser.init()
    try:
        p.parse("not a number").result(timeout=30)
    finally:
        p.stop()
    """
)


@pytest.mark.timeout(90)
def test_an_uncaught_worker_error_prints_the_worker_side_traceback(tmp_path):
    """What a user sees when a process worker's error ends their script: the worker's frames
    (a note from 3.11 on, a chained ``RemoteTraceback`` on 3.10) and the caller's own line."""
    script = tmp_path / "fails.py"
    script.write_text(_FAILING_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    assert "--- traceback in the worker process ---" in err, err
    assert "in parse" in err, err  # the worker-side frame of the failing method
    assert 'p.parse("not a number").result(timeout=30)' in err, err  # the caller's line
    assert "ValueError: invalid literal for int() with base 10: 'not a number'" in err, err
