"""Interpreter exit with busy workers nobody stopped (SPEC §2.4, §3): whether the script ends
normally, with an uncaught exception or by Ctrl-C, exit takes about a second however many
workers are busy, and no worker process survives it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import process_alive, wait_until

# Each nap marks a file when it ends: exit itself should take about a second, so no nap may
# end before the program does. Before the fix 16 busy process workers took 16 s or more to
# stop, one after another, and the later ones would have finished their naps.
NAP = 10.0

SCRIPT = textwrap.dedent(
    """
    import os, sys, threading, time
    from concurry import worker

    @worker
    class Sleeper:
        def where(self):
            return os.getpid(), threading.get_ident()

        def nap(self, seconds, folder):
            time.sleep(seconds)
            open(os.path.join(folder, f"napped-{os.getpid()}-{threading.get_ident()}"), "w").close()

    how, mode, size, nap, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    options = {"mode": mode} if size == 1 else {"mode": mode, "max_workers": size}
    pool = Sleeper.options(**options).init()
    seen = set()
    while len(seen) < size:  # every worker has answered, so every one exists
        seen.add(pool.where().result(timeout=60))
    naps = [pool.nap(nap, folder) for _ in range(size)]
    time.sleep(0.5)  # let the naps start
    print("PIDS", *sorted({pid for pid, _ in seen} - {os.getpid()}), flush=True)
    print("READY", flush=True)
    if how == "exception":
        raise RuntimeError("the script fails")
    if how == "ctrl-c":
        time.sleep(60)
    """
)


def _run_until_exit(tmp_path, how: str, mode: str, size: int) -> tuple[int, list[int], str]:
    """Run the script (its naps mark ``tmp_path``); return the exit code, worker pids, stderr."""
    script = tmp_path / "busy_at_exit.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen(
        [sys.executable, str(script), how, mode, str(size), str(NAP), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, so Ctrl-C reaches it as in a terminal
    )
    pids: list[int] = []
    try:
        for line in proc.stdout:
            if line.startswith("PIDS"):
                pids = [int(pid) for pid in line.split()[1:]]
            if line.startswith("READY"):
                break
        else:
            pytest.fail(f"the script ended before it was ready: {proc.communicate(timeout=30)[1]}")
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        return proc.returncode, pids, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.timeout(150)
@pytest.mark.parametrize("how", ["normal", "exception", "ctrl-c"])
@pytest.mark.parametrize(("mode", "size"), [("process", 16), ("thread", 16), ("asyncio", 1)])
def test_exit_with_busy_workers_is_prompt(tmp_path, how, mode, size):
    code, pids, err = _run_until_exit(tmp_path, how, mode, size)
    expected = {"normal": 0, "exception": 1, "ctrl-c": -signal.SIGINT}[how]
    assert code == expected, err
    if how == "exception":
        assert "RuntimeError: the script fails" in err
    assert len(pids) == (size if mode == "process" else 0)
    assert wait_until(lambda: not any(process_alive(pid) for pid in pids), timeout=10)
    napped = sorted(path.name for path in tmp_path.glob("napped-*"))
    assert napped == [], f"exit waited for {len(napped)} of the {NAP:.0f} s naps to end"


# A finalizer that stops a busy worker while the interpreter shuts down: the worker's threads
# are frozen by then (Python 3.13's join() on them waited forever), so stop() must not wait for
# them, and every call must still end. The class lives in its own module, so the frozen worker
# thread does not keep the script's globals (and the finalizer) alive.
SLEEPER_MODULE = textwrap.dedent(
    """
    import time
    from concurry import worker

    @worker
    class Sleeper:
        def nap(self, seconds):
            time.sleep(seconds)
    """
)
STOP_AT_TEARDOWN = textwrap.dedent(
    """
    import os, sys, time
    from sleeper import Sleeper

    mode, size = sys.argv[1], int(sys.argv[2])
    options = {"mode": mode} if size == 1 else {"mode": mode, "max_workers": size}
    handle = Sleeper.options(**options).init()
    naps = [handle.nap(600) for _ in range(size)]
    time.sleep(0.5)  # the naps have started

    class StopsAtTeardown:
        def __del__(self, handle=handle, naps=naps, write=os.write):  # (print is gone by then)
            handle.stop(timeout=600)
            write(1, f"STOPPED, every call done: {all(nap.done() for nap in naps)}\\n".encode())

    holder = StopsAtTeardown()
    print("READY", flush=True)
    """
)


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("mode", "size"), [("thread", 1), ("thread", 2), ("asyncio", 1), ("process", 1), ("process", 2)]
)
def test_stop_from_a_finalizer_at_exit_returns_and_ends_every_call(tmp_path, mode, size):
    (tmp_path / "sleeper.py").write_text(SLEEPER_MODULE)
    (tmp_path / "main.py").write_text(STOP_AT_TEARDOWN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *(p for p in sys.path if p)])}
    proc = subprocess.run(
        [sys.executable, "main.py", mode, str(size)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["READY", "STOPPED, every call done: True"], proc.stderr
