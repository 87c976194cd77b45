"""Leaving a ``with`` block (SPEC §2.4, §5): the stop timeout applies (TaskWorker/Executor
included, not ``Executor.__exit__``'s unbounded wait); on an exception (Ctrl-C included) calls
not started are cancelled and the workers are released promptly. Also
``shutdown(wait=False, cancel_futures=True)``: queued futures show cancelled when it returns."""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from concurry import TaskWorker, task, temp_config, worker
from conftest import process_alive, wait_until


def mark_and_sleep(folder: str, index: int, seconds: float) -> int:
    """Leave a trace that the call started (works across processes), then sleep."""
    open(os.path.join(folder, f"started-{index}"), "w").close()
    time.sleep(seconds)
    return index


def _started(folder) -> int:
    return len([name for name in os.listdir(folder) if name.startswith("started-")])


@worker
class Napper:
    def nap(self, folder: str, index: int, seconds: float) -> int:
        return mark_and_sleep(folder, index, seconds)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("max_workers", [1, 2])
def test_leaving_a_taskworker_block_applies_the_stop_timeout(pool_mode, tmp_path, max_workers):
    """Two calls per worker, each longer than ``stop_timeout``: at the deadline the calls not
    started are cancelled (never run), the running ones are cancelled too; nothing is pending."""
    with temp_config(global_stop_timeout=1.0):
        tw = TaskWorker.options(mode=pool_mode, max_workers=max_workers).init()
    with tw:
        assert isinstance(tw, cf.Executor)
        futures = [tw.submit(mark_and_sleep, str(tmp_path), i, 3.0) for i in range(2 * max_workers)]
        assert wait_until(lambda: _started(tmp_path) == max_workers, 20)
    assert all(f.done() for f in futures)
    assert sum(f.cancelled() for f in futures) >= max_workers  # the ones that had not started
    time.sleep(0.2)
    assert _started(tmp_path) == max_workers


@pytest.mark.timeout(60)
def test_leaving_a_task_function_block_applies_the_stop_timeout(tmp_path):
    @task(mode="thread", max_workers=2)
    def nap(index: int) -> int:
        return mark_and_sleep(str(tmp_path), index, 3.0)

    with temp_config(global_stop_timeout=1.0):
        nap(-1).result(timeout=20)  # the task's pool starts now, with this stop timeout
    with nap:
        futures = [nap(i) for i in range(4)]
        assert wait_until(lambda: _started(tmp_path) == 3, 20)
    assert all(f.done() for f in futures)
    assert _started(tmp_path) == 3


class _Boom(Exception):
    pass


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["worker", "taskworker", "task"])
def test_an_exception_in_the_block_cancels_unstarted_calls_and_releases_soon(pool_mode, tmp_path, kind):
    """The default stop timeout is 30 s; an exception leaves the block about at once instead,
    the calls not started never run, nothing is left pending."""
    folder = str(tmp_path)
    if kind == "worker":
        handle = Napper.options(mode=pool_mode, max_workers=2).init()
        call = lambda i: handle.nap(folder, i, 10.0)  # noqa: E731
    elif kind == "taskworker":
        handle = TaskWorker.options(mode=pool_mode, max_workers=2).init()
        call = lambda i: handle.submit(mark_and_sleep, folder, i, 10.0)  # noqa: E731
    else:
        handle = task(mode=pool_mode, max_workers=2)(mark_and_sleep)
        call = lambda i: handle(folder, i, 10.0)  # noqa: E731
    futures = []
    with pytest.raises(_Boom), handle:
        futures += [call(i) for i in range(8)]
        assert wait_until(lambda: _started(tmp_path) == 2, 20)
        raise _Boom()
    assert all(f.done() for f in futures)
    # the two running calls too: had the exit waited for them (or used the 30 s stop timeout)
    # they would have ended, 10 s in, with their result
    assert all(f.cancelled() for f in futures)
    time.sleep(0.2)
    assert _started(tmp_path) == 2


@pytest.mark.timeout(60)
def test_shutdown_without_waiting_cancels_queued_futures_before_returning(pool_mode, tmp_path):
    """As ``concurrent.futures``: right after ``shutdown(wait=False, cancel_futures=True)``
    returns, every call that had not started shows cancelled."""
    tw = TaskWorker.options(mode=pool_mode, max_workers=2).init()
    running = [tw.submit(mark_and_sleep, str(tmp_path), i, 1.0) for i in range(2)]
    assert wait_until(lambda: _started(tmp_path) == 2, 20)
    queued = [tw.submit(mark_and_sleep, str(tmp_path), i, 0.0) for i in range(2, 12)]
    tw.shutdown(wait=False, cancel_futures=True)
    assert [f.cancelled() for f in queued] == [True] * len(queued)
    assert all(wait_until(f.done, 20) for f in running)
    assert _started(tmp_path) == 2


# ---- Ctrl-C in a real program ----

CTRL_C_SCRIPT = textwrap.dedent(
    """
    import os, time
    from concurry import worker

    @worker
    class Sleepy:
        def pid(self):
            return os.getpid()
        def nap(self, seconds):
            time.sleep(seconds)
            open(os.path.join(FOLDER, f"napped-{os.getpid()}-{time.monotonic_ns()}"), "w").close()
            return seconds

    with Sleepy.options(mode=MODE, max_workers=2).init() as pool:
        pids = {pool.pid().result() for _ in range(4)}
        print("PIDS", *sorted(pids), flush=True)
        futures = [pool.nap(10) for _ in range(6)]
        time.sleep(0.3)
        print("READY", flush=True)
        for f in futures:
            f.result()
    """
)


@pytest.mark.timeout(90)
def test_ctrl_c_inside_a_pool_block_ends_the_program_promptly(pool_mode, tmp_path):
    path = tmp_path / "ctrl_c.py"
    path.write_text(CTRL_C_SCRIPT.replace("MODE", repr(pool_mode)).replace("FOLDER", repr(str(tmp_path))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen(
        [sys.executable, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        pids = [int(p) for p in proc.stdout.readline().split()[1:]]
        assert proc.stdout.readline().strip() == "READY"
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
        _out, err = proc.communicate()
    assert "KeyboardInterrupt" in err
    if pool_mode == "process":
        assert len(pids) == 2
        assert wait_until(lambda: not any(process_alive(pid) for pid in pids), 10)
    # every nap (10 s) marks a file when it ends: the program ended before any did
    napped = sorted(path.name for path in tmp_path.glob("napped-*"))
    assert napped == [], f"Ctrl-C let {len(napped)} of the 10 s naps end before the program did"
