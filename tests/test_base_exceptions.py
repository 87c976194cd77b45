"""A method raising ``KeyboardInterrupt``, ``SystemExit`` or another ``BaseException`` (SPEC §2.3):
its future fails with that exception, is never cancelled, and the worker serves the next call,
in every mode and in pools. In sync mode only a real Ctrl-C goes to the caller instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from concurry import worker


class Halt(BaseException):
    """A user's own ``BaseException`` subclass."""


RAISED = [
    (KeyboardInterrupt, "interrupted on purpose"),
    (SystemExit, "exit on purpose"),
    (Halt, "halt on purpose"),
]


@worker
class Raiser:
    def fail(self, kind: type, message: str) -> None:
        raise kind(message)

    async def fail_async(self, kind: type, message: str) -> None:
        raise kind(message)

    def ping(self) -> tuple[int, int]:
        return os.getpid(), threading.get_ident()


def _check_failed(future, kind: type, message: str) -> None:
    error = future.exception(timeout=30)
    assert type(error) is kind
    assert str(error) == message
    assert not future.cancelled()
    assert future.done()
    with pytest.raises(kind, match=message):
        future.result(timeout=1)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fail", "fail_async"])
def test_base_exception_fails_only_its_call(mode, method):
    w = Raiser.options(mode=mode).init()
    try:
        for kind, message in RAISED:
            _check_failed(getattr(w, method)(kind, message), kind, message)
            assert w.ping().result(timeout=30)  # the worker still serves
        # several in one burst: each fails alone, the calls between them still run
        burst = []
        for kind, message in RAISED:
            burst += [getattr(w, method)(kind, message), w.ping()]
        for position, (kind, message) in enumerate(RAISED):
            _check_failed(burst[2 * position], kind, message)
            assert burst[2 * position + 1].result(timeout=30)
    finally:
        w.stop(timeout=10)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("method", ["fail", "fail_async"])
def test_base_exception_in_a_pool(pool_mode, method):
    pool = Raiser.options(mode=pool_mode, max_workers=2).init()
    try:
        futures = [getattr(pool, method)(kind, message) for kind, message in RAISED * 2]
        for future, (kind, message) in zip(futures, RAISED * 2, strict=True):
            _check_failed(future, kind, message)
        workers = {pool.ping().result(timeout=30) for _ in range(6)}
        assert len(workers) == 2  # both workers still serve
    finally:
        pool.stop(timeout=10)


CTRL_C_SCRIPT = textwrap.dedent(
    """
    import time
    from concurry import worker

    @worker(mode="sync")
    class Slow:
        def nap(self):
            time.sleep(30)

    w = Slow.init()
    print("READY", flush=True)
    for _ in range(10):
        w.nap()  # fire and forget: a Ctrl-C must still stop this loop
    print("LOOP FINISHED", flush=True)
    """
)


@pytest.mark.timeout(60)
def test_ctrl_c_during_a_sync_call_goes_to_the_caller(tmp_path):
    """In sync mode the call runs in the caller's thread, so Ctrl-C lands inside the method; it
    stops the program, as Ctrl-C does in other modes, rather than failing one future."""
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(0.5)  # let the first call start
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert "LOOP FINISHED" not in out
    assert "KeyboardInterrupt" in err
    assert proc.returncode != 0
