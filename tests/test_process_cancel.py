"""``cancel()`` on calls that have not started (issue 10, item 7): ``concurrent.futures``
semantics in thread and process workers; a cancelled call never runs; ``map(timeout=)``
cancels what has not started; a process worker hands back calls not yet given to its child.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from concurry import TaskWorker, worker
from conftest import wait_until

QUEUED = 60


class Log:
    def __init__(self) -> None:
        self.ran: list = []

    def block(self, path: str, seconds: float) -> str:
        Path(path).touch()  # tells the test this call has started
        time.sleep(seconds)
        return "blocked"

    def record(self, value):
        self.ran.append(value)
        return value

    def history(self) -> list:
        return list(self.ran)


LogWorker = worker(Log)


@pytest.mark.timeout(60)
def test_calls_queued_behind_a_running_one_can_be_cancelled(pool_mode, tmp_path):
    w = LogWorker.options(mode=pool_mode).init()
    try:
        marker = tmp_path / "started"
        running = w.block(str(marker), 3.0)  # long enough for 60 cancels, also on a loaded machine
        queued = [w.record(i) for i in range(QUEUED)]
        assert wait_until(marker.exists, timeout=30)
        outcomes = [f.cancel() for f in queued]
        # cancel() fails only for a call that is running or finished
        assert all(ok or f.running() or f.done() for ok, f in zip(outcomes, queued, strict=True))
        assert sum(outcomes) >= QUEUED - 16  # at most a small window was handed to a process
        assert not running.cancel() and running.running()
        after = w.record("after")
        assert after.result(timeout=30) == "after"
        assert running.result(timeout=30) == "blocked"
        kept = [i for i, ok in zip(range(QUEUED), outcomes, strict=True) if not ok]
        assert w.history().result(timeout=30) == [*kept, "after"]  # a cancelled call never ran
        assert all(f.cancelled() for ok, f in zip(outcomes, queued, strict=True) if ok)
    finally:
        w.stop()


def _sleep_and_mark(folder: str, index: int, seconds: float) -> int:
    Path(folder, str(index)).touch()
    time.sleep(seconds)
    return index


@pytest.mark.timeout(60)
def test_map_timeout_cancels_calls_not_started(pool_mode, tmp_path):
    tw = TaskWorker.options(mode=pool_mode).init()
    try:
        items = 40
        with pytest.raises(TimeoutError):
            folders, delays = [str(tmp_path)] * items, [0.2] * items
            for _ in tw.map(_sleep_and_mark, folders, range(items), delays, timeout=0.5):
                pass
        # the next submit does not wait behind the 40 calls (that would take 8 s)
        assert tw.submit(int, "7").result(timeout=6) == 7
        started = len(list(tmp_path.iterdir()))
        assert started < items
        time.sleep(0.5)
        assert len(list(tmp_path.iterdir())) == started  # the cancelled calls never run
    finally:
        tw.stop()


@pytest.mark.timeout(60)
def test_process_backend_withdraws_calls_not_handed_to_the_child(tmp_path):
    w = LogWorker.options(mode="process").init()
    backend = w._engine
    try:
        marker = tmp_path / "started"
        running = w.block(str(marker), 0.5)
        queued = [w.record(i) for i in range(QUEUED)]
        assert wait_until(marker.exists, timeout=30)
        taken = backend.withdraw()
        assert taken, "calls waiting in the parent are handed back"
        assert backend.unfinished == QUEUED + 1 - len(taken)
        assert all(not future.done() and not future.running() for future, *_ in taken)  # untouched
        assert [name for _, name, _, _ in taken] == ["record"] * len(taken)
        values = [args[0] for _, _, args, _ in taken]
        assert values == list(range(QUEUED - len(taken), QUEUED))  # the last ones, in order
        assert running.result(timeout=30) == "blocked"
        kept = list(range(QUEUED - len(taken)))
        assert [f.result(timeout=30) for f in queued[: len(kept)]] == kept
        assert w.history().result(timeout=30) == kept  # withdrawn calls never ran here
        assert backend.withdraw() == []
    finally:
        w.stop()


@pytest.mark.timeout(60)
def test_with_claims_calls_in_the_childs_window_are_taken_back_too(tmp_path):
    """A pool balancing by ``active`` sets ``claims``: then even calls already handed to a busy
    child come back (their futures stay running), and the child never runs them."""
    from concurry.backends.process import ProcessBackend
    from concurry.config import resolve_options

    options = resolve_options({"mode": "process"})
    backend = ProcessBackend(Log, (), {}, options, "claims-test")
    backend.claims = True
    backend.start()
    try:
        marker = tmp_path / "started"
        running = backend.submit("block", (str(marker), 1.0), {})
        queued = [backend.submit("record", (i,), {}) for i in range(5)]  # inside the window
        assert wait_until(marker.exists, timeout=30)
        taken = backend.withdraw()
        assert [args[0] for _, _, args, _ in taken] == list(range(5))  # all of them, in order
        assert [f for f, *_ in taken] == queued
        assert all(f.running() for f in queued)  # handed to the child: running, not cancellable
        assert backend.unfinished == 1
        assert running.result(timeout=30) == "blocked"
        assert backend.submit("history", (), {}).result(timeout=30) == []  # none ran there
        assert wait_until(lambda: backend.unfinished == 0)
        # given back to the same worker, a taken-back call runs once, normally
        back = backend.submit("record", (42,), {}, queued[0])
        assert back.result(timeout=30) == 42
        assert backend.submit("history", (), {}).result(timeout=30) == [42]
    finally:
        backend.stop(10)
