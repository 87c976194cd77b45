"""Process mode specifics (SPEC §3, §13; issue #3): start methods, scripts without a guard,
crashes, pickling failures, remote tracebacks, output, cleanup and orphan-freedom.

The behaviour shared with the other modes runs in the mode-parametrised test files.
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest

import concurry
from concurry import ConcurrentFuture, WorkerCrashedError, WorkerStoppedError, worker
from conftest import child_pids, open_fds, process_alive, wait_until, zombie_children

SCRIPT_TIMEOUT = 60


class Box:
    """A process worker used throughout: state, sleeps, failures and self-inflicted deaths."""

    def __init__(self, start: int = 0):
        self.count = start
        self.log: list = []

    def incr(self) -> int:
        self.count += 1
        return self.count

    def record(self, value):
        self.log.append(value)
        return list(self.log)

    def pid(self) -> int:
        return os.getpid()

    def echo(self, value):
        return value

    def sleep(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def sleep_marked(self, path: str, seconds: float) -> float:
        Path(path).touch()  # tells the test this call has started
        time.sleep(seconds)
        return seconds

    def fail(self, text: str):
        raise KeyError(text)

    def make_lock(self):
        return threading.Lock()

    def raise_unpicklable(self):
        err = ValueError("carries a lock")
        err.lock = threading.Lock()
        raise err

    def raise_unrebuildable(self):
        raise TwoArgError("a", "b")

    def exit(self, code: int) -> None:
        os._exit(code)

    def kill_self(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def say(self, text: str) -> None:
        print(text)
        print(f"err:{text}", file=sys.stderr)

    def start_helper(self, how: str) -> int:
        """Start a long-lived process that inherits this worker's descriptors (socket included)."""
        if how == "popen":
            return subprocess.Popen(["sleep", "30"], close_fds=False).pid
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        return pid

    def forked_from_parent(self) -> bool:
        return hasattr(sys, "_concurry_test_marker")


class TwoArgError(Exception):
    """Pickles, but cannot be rebuilt (its __init__ wants two arguments)."""

    def __init__(self, a, b):
        super().__init__(f"{a}+{b}")


class FailingInit:
    def __init__(self, x: int):
        raise LookupError(f"no such thing: {x}")


ProcBox = worker(Box)


def test_worker_runs_in_another_process_and_keeps_state():
    with ProcBox.options(mode="process").init(10) as w:
        assert w.pid().result(timeout=10) != os.getpid()
        assert [w.incr() for _ in range(3)][-1].result(timeout=10) == 13


def test_crashed_error_is_exported():
    assert concurry.WorkerCrashedError is WorkerCrashedError
    assert issubclass(WorkerCrashedError, RuntimeError)


def test_init_error_has_its_original_type_and_leaves_no_process():
    before = child_pids()
    with pytest.raises(LookupError, match="no such thing: 3"):
        worker(FailingInit).options(mode="process").init(3)
    assert wait_until(lambda: child_pids() <= before)


def test_many_calls_keep_order():
    with ProcBox.options(mode="process").init() as w:
        futures = [w.record(i) for i in range(3000)]
        assert futures[-1].result(timeout=30) == list(range(3000))
        assert all(f.done() for f in futures)


def test_large_bytes_round_trip():
    data = os.urandom(1 << 20)
    with ProcBox.options(mode="process").init() as w:
        assert w.echo(data).result(timeout=30) == data


# ---- start methods ----


@pytest.mark.parametrize("method", ["spawn", "fork", "forkserver"])
def test_start_methods(method):
    with ProcBox.options(mode="process", mp_context=method).init(1) as w:
        assert w.incr().result(timeout=10) == 2
        assert w.pid().result(timeout=10) != os.getpid()


def test_forkserver_workers_report_crashes_and_init_errors():
    w = ProcBox.options(mode="process", mp_context="forkserver").init()
    doomed = w.exit(4)
    with pytest.raises(WorkerCrashedError, match="exited with code 4"):
        doomed.result(timeout=10)
    w.stop()
    with pytest.raises(LookupError, match="no such thing"):
        worker(FailingInit).options(mode="process", mp_context="forkserver").init(1)


def test_default_start_is_safe_with_threads_running():
    lock = threading.Lock()
    lock.acquire()  # a lock held by this thread would deadlock a forked child that touched it
    stop = threading.Event()
    busy = threading.Thread(target=stop.wait, daemon=True)
    busy.start()
    sys._concurry_test_marker = True  # a forked child would inherit it; a spawned one does not
    try:
        with ProcBox.options(mode="process").init() as w:
            assert w.incr().result(timeout=10) == 1
            assert w.forked_from_parent().result(timeout=10) is False
    finally:
        del sys._concurry_test_marker
        stop.set()
        lock.release()


# ---- crashes ----


def test_sigkill_fails_unfinished_calls_and_later_calls():
    w = ProcBox.options(mode="process").init()
    pid = w.pid().result(timeout=10)
    futures = [w.sleep(30)] + [w.incr() for _ in range(5)]
    os.kill(pid, signal.SIGKILL)
    for f in futures:  # "within about a second": every future has failed 2 s after the kill
        with pytest.raises(WorkerCrashedError, match="SIGKILL"):
            f.result(timeout=2)
    with pytest.raises(WorkerCrashedError):
        w.incr()
    assert w._backend.crashed
    w.stop()
    assert not zombie_children()


def test_os_exit_fails_unfinished_calls_and_neighbours_keep_working():
    neighbour = ProcBox.options(mode="process").init()
    w = ProcBox.options(mode="process").init()
    futures = [w.incr(), w.exit(3), w.incr(), w.incr()]
    assert futures[0].result(timeout=10) == 1
    for f in futures[1:]:
        with pytest.raises(WorkerCrashedError, match="exited with code 3"):
            f.result(timeout=2)
    with pytest.raises(WorkerCrashedError):
        w.incr()
    assert neighbour.incr().result(timeout=10) == 1
    w.stop()
    neighbour.stop()
    assert not zombie_children()


def test_self_kill_inside_a_call():
    w = ProcBox.options(mode="process").init()
    doomed = w.kill_self()
    # the next call fails with the crash: at once if the death was already seen, else later
    with pytest.raises(WorkerCrashedError):
        w.incr().result(timeout=10)
    with pytest.raises(WorkerCrashedError, match="SIGKILL"):
        doomed.result(timeout=10)
    w.stop()
    w.stop()  # idempotent


# ---- pickling ----


def test_unpicklable_argument_fails_that_call_only():
    with ProcBox.options(mode="process").init() as w:
        bad = w.echo(threading.Lock())
        with pytest.raises(TypeError, match=r"Box\.echo.*lock"):
            bad.result(timeout=10)
        assert w.incr().result(timeout=10) == 1


def test_unpicklable_result_fails_that_call_only():
    with ProcBox.options(mode="process").init() as w:
        with pytest.raises(TypeError, match=r"Box\.make_lock.*lock"):
            w.make_lock().result(timeout=10)
        assert w.incr().result(timeout=10) == 1


def test_lambdas_and_local_classes_cross_by_value():
    class Local:
        def __init__(self, v):
            self.v = v

    with ProcBox.options(mode="process").init() as w:
        assert w.echo(Local(4)).result(timeout=10).v == 4
        fn = w.echo(lambda x: x + 1).result(timeout=10)
        assert fn(1) == 2


def printed_traceback(exc: BaseException) -> str:
    """What Python prints for ``exc`` uncaught: the worker's traceback is a note from 3.11 on,
    a chained ``RemoteTraceback`` cause on 3.10; either way it is in this text."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def test_exceptions_keep_type_and_carry_the_worker_traceback():
    with ProcBox.options(mode="process").init() as w:
        with pytest.raises(KeyError, match="missing") as info:
            w.fail("missing").result(timeout=10)
        text = printed_traceback(info.value)
        assert "traceback in the worker process" in text
        assert "in fail" in text and "raise KeyError(text)" in text, text


@pytest.mark.parametrize(
    ("method", "text"),
    [
        ("raise_unpicklable", "builtins.ValueError: carries a lock"),
        ("raise_unrebuildable", "TwoArgError: a+b"),
    ],
)
def test_exceptions_that_cannot_travel_arrive_as_text(method, text):
    with ProcBox.options(mode="process").init() as w:
        with pytest.raises(RuntimeError) as info:
            getattr(w, method)().result(timeout=10)
        assert text in str(info.value)
        printed = printed_traceback(info.value)
        assert "traceback in the worker process" in printed and f"in {method}" in printed, printed
        assert w.incr().result(timeout=10) == 1


def test_exception_class_unknown_to_the_parent_arrives_as_text(tmp_path, monkeypatch):
    """The class lives in a module only the child can import."""
    (tmp_path / "childonly_errors.py").write_text("class ChildOnlyError(Exception):\n    pass\n")
    code = "import sys; sys.path.insert(0, %r); import childonly_errors as m; raise m.ChildOnlyError('deep')"
    with concurry.Executor(mode="process") as ex:
        with pytest.raises(RuntimeError, match=r"childonly_errors\.ChildOnlyError: deep"):
            ex.submit(exec, code % str(tmp_path)).result(timeout=10)
        assert ex.submit(int, "7").result(timeout=10) == 7


# ---- futures' states ----


def test_calls_handed_to_the_process_are_running_and_cannot_be_cancelled(tmp_path):
    with ProcBox.options(mode="process").init() as w:
        marker = tmp_path / "started"
        first = w.sleep_marked(str(marker), 0.5)
        queued = w.record("queued")
        assert wait_until(marker.exists, timeout=20)
        assert first.running()
        assert not first.cancel() and not queued.cancel()  # as with ProcessPoolExecutor
        held = w.record(w.sleep(0.3))  # waits in the parent for its argument: still cancellable
        assert held.cancel() and held.cancelled()
        assert w.record("last").result(timeout=10) == ["queued", "last"]
        assert queued.result(timeout=10) == ["queued"]


# ---- a process the worker started holds the worker's socket ----


@pytest.mark.parametrize("how", ["popen", "fork"])
def test_crash_is_seen_while_a_helper_process_holds_the_socket(how):
    w = ProcBox.options(mode="process").init()
    pid = w.pid().result(timeout=10)
    helper = w.start_helper(how).result(timeout=10)
    try:
        pending = w.sleep(30)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerCrashedError, match="SIGKILL"):
            pending.result(timeout=10)  # (the helper holds the socket for 30 s)
        w.stop(timeout=1)
        assert process_alive(helper), "stop() waited for the helper to let go of the socket"
    finally:
        os.kill(helper, signal.SIGKILL)


def test_stop_returns_while_a_helper_process_holds_the_socket():
    w = ProcBox.options(mode="process").init()
    helper = w.start_helper("fork").result(timeout=10)
    try:
        done = w.incr()
        w.stop(timeout=2)
        assert process_alive(helper), "stop() waited for the helper to let go of the socket"
        assert done.result(timeout=1) == 1
        with pytest.raises(WorkerStoppedError):
            w.incr()
    finally:
        os.kill(helper, signal.SIGKILL)


# ---- futures among arguments and results ----


def test_pending_future_arguments_hold_later_calls_in_order():
    gate = threading.Event()
    with worker(Box).options(mode="thread").init() as t, ProcBox.options(mode="process").init() as p:
        slow = t.echo(1)
        gated = ConcurrentFuture()
        first = p.record(gated)
        second = p.record("after")
        assert not first.done()
        threading.Timer(0.1, lambda: (gated.set_result("gated"), gate.set())).start()
        assert second.result(timeout=10) == ["gated", "after"]
        assert first.result(timeout=10) == ["gated"]
        assert slow.result(timeout=10) == 1


def test_failed_future_argument_fails_the_call_with_the_same_error():
    with ProcBox.options(mode="process").init() as p:
        failed = ConcurrentFuture()
        call = p.echo([failed])
        failed.set_exception(ZeroDivisionError("nope"))
        with pytest.raises(ZeroDivisionError, match="nope"):
            call.result(timeout=10)
        assert p.incr().result(timeout=10) == 1


# ---- stop ----


@pytest.mark.timeout(60)
def test_stop_leaves_no_process_zombie_or_descriptor():
    # the fork server is a long-lived helper (one per process): start it before counting
    ProcBox.options(mode="process", mp_context="forkserver").init().stop()
    before_children, before_fds = child_pids(), open_fds()
    workers = [ProcBox.options(mode="process").init() for _ in range(2)]
    workers.append(ProcBox.options(mode="process", mp_context="fork").init())
    workers.append(ProcBox.options(mode="process", mp_context="forkserver").init())
    for w in workers:
        w.incr().result(timeout=10)
    for w in workers:
        w.stop()
    assert wait_until(lambda: child_pids() <= before_children)
    assert not zombie_children()
    assert wait_until(lambda: open_fds() <= before_fds)


def test_stop_lets_queued_calls_finish_then_refuses_calls():
    w = ProcBox.options(mode="process").init()
    futures = [w.sleep(0.01) for _ in range(5)] + [w.incr()]
    w.stop()
    assert futures[-1].result(timeout=1) == 1
    with pytest.raises(WorkerStoppedError, match="Box"):
        w.incr()


def test_stop_cancel_futures_cancels_calls_not_started(tmp_path):
    w = ProcBox.options(mode="process").init()
    marker = tmp_path / "started"
    running = w.sleep_marked(str(marker), 1.0)
    queued = [w.incr() for _ in range(10)]
    assert wait_until(marker.exists)
    stopper = threading.Thread(target=w.stop, kwargs={"timeout": 10, "cancel_futures": True})
    stopper.start()
    assert wait_until(lambda: all(f.cancelled() for f in queued))
    stopper.join(10)
    assert not stopper.is_alive()
    assert running.result(timeout=5) == 1.0
    for f in queued:
        with pytest.raises(cf.CancelledError):
            f.result(timeout=1)


def test_stop_timeout_cancels_what_is_unfinished_and_returns():
    before = child_pids()
    w = ProcBox.options(mode="process").init()
    running = w.sleep(30)
    queued = w.incr()
    w.stop(timeout=0.3)
    assert running.cancelled() and queued.cancelled()
    assert wait_until(lambda: child_pids() <= before)
    assert not zombie_children()


def test_dropped_handle_stops_its_process():
    before = child_pids()
    w = ProcBox.options(mode="process").init()
    assert w.incr().result(timeout=10) == 1
    del w
    gc.collect()  # the handle caches bound methods that point back to it: a cycle
    assert wait_until(lambda: child_pids() <= before, timeout=10)
    assert wait_until(lambda: not zombie_children(), timeout=10)


# ---- output ----


def test_child_output_reaches_the_parent_streams(capfd):
    with ProcBox.options(mode="process").init() as w:
        w.say("hello from the child").result(timeout=10)
    out, err = capfd.readouterr()
    assert "hello from the child" in out
    assert "err:hello from the child" in err
