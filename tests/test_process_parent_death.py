"""A process worker dies with its parent at once, even inside a long C call holding the GIL
(issue 10, item 12): Linux's parent-death signal for every start method, the fork server too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from concurry import worker
from conftest import process_alive, wait_until
from test_process_scripts import _env

METHODS = ["spawn", "fork", "forkserver"]

# ``sum`` over a huge range runs in C and never returns to the interpreter loop: no other
# thread of the child (a watcher polling for its parent) gets the GIL while it runs.
PARENT_SCRIPT = textwrap.dedent(
    """
    import os, time
    from concurry import worker

    @worker(mode="process", mp_context={method!r})
    class W:
        def pids(self):
            return os.getpid(), os.getppid()
        def hog(self):
            return sum(range(10**13))

    w = W.init()
    pid, ppid = w.pids().result()
    w.hog()
    time.sleep(0.5)  # let the child enter the C call
    print(pid, ppid, flush=True)
    time.sleep(120)
    """
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_worker_in_a_gil_holding_call_dies_when_its_parent_is_killed(tmp_path, method):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT_SCRIPT.format(method=method)],
        stdout=subprocess.PIPE, text=True, cwd=tmp_path, env=_env(),
    )
    pid = ppid = None
    try:
        pid, ppid = map(int, parent.stdout.readline().split())
        assert process_alive(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        # the watcher thread alone would wait for ever: the child never releases the GIL
        assert wait_until(lambda: not process_alive(pid), timeout=5)
        if method == "forkserver":  # the helper, the worker's parent, died with the user's process
            assert ppid != parent.pid
            assert wait_until(lambda: not process_alive(ppid), timeout=5)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        for leftover in (pid, ppid if method == "forkserver" else None):
            if leftover is not None and process_alive(leftover):  # never leave a spinning child
                os.kill(leftover, signal.SIGKILL)


class Pid:
    def pid(self) -> int:
        import os

        return os.getpid()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_worker_started_from_a_thread_outlives_that_thread(method):
    """The parent-death signal fires when the *thread* that created the child exits: workers
    started from short-lived threads (pools replacing workers, user threads) must not die."""
    made = []
    options = worker(Pid).options(mode="process", mp_context=method)
    starter = threading.Thread(target=lambda: made.append(options.init()))
    starter.start()
    starter.join()
    w = made[0]
    try:
        first = w.pid().result(timeout=30)
        threading.Event().wait(0.3)  # time for a wrongly armed signal to arrive
        assert w.pid().result(timeout=30) == first
        assert process_alive(first)
    finally:
        w.stop()
    if method != "forkserver":  # the fork server (and its launcher) lasts until exit, by design
        # the thread that created the child lived as long as the child, and not longer
        assert [t.name for t in threading.enumerate() if t.name == "concurry-launcher"] == []
