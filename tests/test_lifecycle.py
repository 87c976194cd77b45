"""Worker lifecycle and stop semantics (SPEC §2.4) in every mode: init errors, context managers,
stop(), calls after stop, nothing left behind.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time

import pytest

from concurry import WorkerStoppedError, worker
from concurry.options import WorkerOptions
from conftest import OUT_OF_PROCESS, child_pids, concurry_threads, open_fds, wait_until
from test_workers import (
    Blocker,
    BrokenInit,
    CounterWorker,
    Empty,
    LookupErrorInit,
    OwnStop,
)

# ---- lifecycle (§2.4) ----

@pytest.mark.parametrize("cls", [BrokenInit, LookupErrorInit])
def test_init_error_raised_from_init_with_original_type(mode, cls):
    expected = ZeroDivisionError if cls is BrokenInit else LookupError
    before = set(concurry_threads())
    with pytest.raises(expected) as info:
        worker(cls).options(mode=mode).init()
    assert "broken __init__ on purpose" in str(info.value) or "no such thing" in str(info.value)
    # no thread is left behind by the failed start
    assert wait_until(lambda: set(concurry_threads()) <= before)


def test_init_succeeds_when_init_does_not_fail(mode):
    w = worker(BrokenInit).options(mode=mode).init(fail=False)
    try:
        assert w.ping().result(timeout=10) == "pong"
    finally:
        w.stop()


def test_wrong_constructor_arguments_raise_type_error_in_caller(mode):
    before = set(concurry_threads())
    with pytest.raises(TypeError, match=r"Counter\.init\(\):.*unexpected keyword argument 'bogus'"):
        CounterWorker.options(mode=mode).init(bogus=1)
    with pytest.raises(TypeError, match=r"Counter\.init\(\):.*too many positional"):
        CounterWorker.options(mode=mode).init(1, 2, 3)
    with pytest.raises(TypeError, match="takes no arguments"):
        worker(Empty).options(mode=mode).init(1)
    assert set(concurry_threads()) <= before


def test_call_after_stop_raises_worker_stopped_error_naming_worker(mode):
    w = CounterWorker.options(mode=mode).init()
    w.incr().result(timeout=10)
    w.stop()
    with pytest.raises(WorkerStoppedError, match=r"worker Counter#\d+ is stopped") as info:
        w.incr()
    assert isinstance(info.value, RuntimeError)
    # a method never looked up before stop also fails
    with pytest.raises(WorkerStoppedError, match="Counter"):
        w.get()
    assert "stopped" in repr(w)


def test_stop_is_idempotent(mode):
    w = CounterWorker.options(mode=mode).init()
    w.stop()
    w.stop()
    w.stop(timeout=0.1, cancel_futures=True)
    with pytest.raises(WorkerStoppedError):
        w.incr()


def test_stop_lets_submitted_calls_finish(concurrent_mode):
    w = CounterWorker.options(mode=concurrent_mode).init()
    futures = [w.sleep(0.002) for _ in range(20)] + [w.incr()]
    w.stop()
    assert [f.result(timeout=1) for f in futures[:-1]] == [0.002] * 20
    assert futures[-1].result(timeout=1) == 1
    assert all(f.done() and not f.cancelled() for f in futures)


@pytest.mark.parametrize("m", ["thread", "asyncio"])
def test_stop_cancel_futures_cancels_queued_calls(m):
    gate = threading.Event()
    w = worker(Blocker).options(mode=m).init(gate)
    running = w.wait_gate()
    assert wait_until(running.running)
    queued = [w.quick() for _ in range(10)]
    stopper = threading.Thread(target=w.stop, kwargs={"timeout": 10, "cancel_futures": True})
    stopper.start()
    assert wait_until(lambda: all(f.cancelled() for f in queued))
    gate.set()
    stopper.join(10)
    assert not stopper.is_alive()
    assert running.result(timeout=5) == "released"
    for f in queued:
        with pytest.raises(cf.CancelledError):
            f.result(timeout=1)


@pytest.mark.parametrize("m", ["thread", "asyncio"])
def test_stop_timeout_cancels_unfinished_calls_and_returns(m):
    gate = threading.Event()
    w = worker(Blocker).options(mode=m).init(gate)
    running = w.wait_gate()
    queued = w.quick()
    assert wait_until(running.running)
    w.stop(timeout=0.2)
    # nothing is left pending forever: the running call and the queued one are cancelled
    assert running.done() and running.cancelled()
    assert queued.done() and queued.cancelled()
    with pytest.raises(cf.CancelledError):
        running.result(timeout=1)
    gate.set()
    # the thread exits once the running call returns, and its late result is dropped
    assert wait_until(lambda: not any(w._backend.name in t.name for t in threading.enumerate()))
    assert running.cancelled()


def test_no_thread_left_after_stop(mode):
    before = set(concurry_threads())
    workers = [CounterWorker.options(mode=mode).init() for _ in range(3)]
    for w in workers:
        w.incr().result(timeout=10)
    for w in workers:
        w.stop()
    assert wait_until(lambda: set(concurry_threads()) <= before), concurry_threads()


@pytest.mark.parametrize("m", ["thread", "asyncio"])
def test_dedicated_thread_named_after_worker(m):
    w = CounterWorker.options(mode=m).init()
    try:
        name = w._backend.name
        assert any(name in t.name and t.name.startswith("concurry") for t in threading.enumerate())
    finally:
        w.stop()


def test_context_manager_stops_worker(mode):
    before = set(concurry_threads())
    with CounterWorker.options(mode=mode).init() as w:
        assert w.incr().result(timeout=10) == 1
        f = w.incr()
    assert f.result(timeout=10) == 2
    with pytest.raises(WorkerStoppedError):
        w.incr()
    assert wait_until(lambda: set(concurry_threads()) <= before)


def test_context_manager_stops_worker_on_error(mode):
    with pytest.raises(ValueError, match="inside"), CounterWorker.options(mode=mode).init() as w:
        raise ValueError("inside")
    with pytest.raises(WorkerStoppedError):
        w.incr()


def test_worker_own_stop_runs_when_handle_stops(mode):
    OwnStop.stopped_flags.clear()
    w = worker(OwnStop).options(mode=mode).init()
    assert w.ping().result(timeout=10) == "pong"
    w.stop()
    if mode not in OUT_OF_PROCESS:  # else it ran in the worker process, whose memory we cannot see
        assert OwnStop.stopped_flags == ["stopped"]


@pytest.mark.parametrize("m", ["sync", "thread", "asyncio"])  # a process worker can't reach the handle
def test_stop_from_inside_the_worker_does_not_deadlock(m):
    holder: dict = {}

    @worker(mode=m)
    class SelfStopper:
        def stop_me(self) -> str:
            holder["handle"].stop()
            return "asked"

    w = SelfStopper.init()
    holder["handle"] = w
    assert w.stop_me().result(timeout=10) == "asked"
    with pytest.raises(WorkerStoppedError):
        w.stop_me()
    w.stop()


def test_garbage_collected_handle_releases_its_thread(concurrent_mode):
    import gc

    before, children = set(concurry_threads()), child_pids()
    assert CounterWorker.options(mode=concurrent_mode).init().incr().result(timeout=10) == 1
    gc.collect()
    assert wait_until(lambda: set(concurry_threads()) <= before, timeout=10)
    assert wait_until(lambda: child_pids() <= children, timeout=10)


def test_resolved_options_are_frozen(mode):
    w = CounterWorker.options(mode=mode).init()
    try:
        assert isinstance(w._options, WorkerOptions)
        with pytest.raises(AttributeError):
            w._options.blocking = True
    finally:
        w.stop()


def test_stop_with_short_timeout_leaves_no_future_pending(concurrent_mode):
    w = CounterWorker.options(mode=concurrent_mode).init()
    futures = [w.sleep(0.01) for _ in range(100)]
    w.stop(timeout=0.05)
    assert all(f.done() for f in futures)  # every one resolved or cancelled, none pending
    finished = [f for f in futures if not f.cancelled()]
    assert all(f.result() == 0.01 for f in finished)
    assert any(f.cancelled() for f in futures)


def test_concurrent_stops_from_many_threads(mode):
    w = CounterWorker.options(mode=mode).init()
    futures = [w.incr() for _ in range(20)]
    errors: list[BaseException] = []

    def stop() -> None:
        try:
            w.stop()
        except BaseException as exc:  # every stop() must return normally
            errors.append(exc)

    stoppers = [threading.Thread(target=stop) for _ in range(4)]
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join(20)
    assert not any(t.is_alive() for t in stoppers)
    assert errors == []
    assert [f.result(timeout=5) for f in futures] == list(range(1, 21))
    with pytest.raises(WorkerStoppedError):
        w.incr()


EXIT_SCRIPT = """
import time
from concurry import worker

@worker(mode={mode!r})
class Busy:
    def nap(self, seconds):
        time.sleep(seconds)
        return seconds

w = Busy.init()
w.nap(0.0).result()
busy = Busy.init()
pending = busy.nap(30)  # still running at exit
print("exiting")
"""


def test_workers_left_running_do_not_hang_interpreter_exit(mode, tmp_path):
    import subprocess
    import sys

    script = tmp_path / "exit_script.py"
    script.write_text(EXIT_SCRIPT.format(mode=mode if mode != "sync" else "thread"))
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=25, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "exiting"
    assert "Traceback" not in proc.stderr


def test_static_class_methods_dataclasses_abcs_and_slots(mode):
    import abc
    import dataclasses

    class Base(abc.ABC):
        @abc.abstractmethod
        def f(self) -> str: ...

    @dataclasses.dataclass
    class Point(Base):
        x: int
        y: int = 2
        factor = 3

        def f(self) -> str:
            return "impl"

        def total(self) -> int:
            return self.x + self.y

        @staticmethod
        def plus_one(v: int) -> int:
            return v + 1

        @classmethod
        def times(cls, v: int) -> int:
            return v * cls.factor

        @property
        def norm(self) -> int:
            return abs(self.x)

    P = worker(Point).options(mode=mode)
    w = P.init(1)
    try:
        assert w.total().result(timeout=10) == 3
        assert w.f().result(timeout=10) == "impl"
        assert w.plus_one(1).result(timeout=10) == 2
        assert w.times(2).result(timeout=10) == 6
        with pytest.raises(AttributeError, match=r"Point\.norm is not a method"):
            w.norm  # noqa: B018
    finally:
        w.stop()
    with pytest.raises(TypeError, match=r"Point\.init\(\): missing a required argument: 'x'"):
        P.init()

    class Abstract(Base):
        pass

    with pytest.raises(TypeError, match="abstract"):
        worker(Abstract).options(mode=mode).init()

    @worker(mode=mode)
    class Slotted:
        __slots__ = ("v",)

        def __init__(self):
            self.v = 5

        def get(self) -> int:
            return self.v

    s = Slotted.init()
    try:
        assert s.get().result(timeout=10) == 5
    finally:
        s.stop()


def test_worker_side_traceback_is_visible(mode):
    import traceback

    w = CounterWorker.options(mode=mode).init()
    try:
        exc = w.fail("where did it fail").exception(timeout=10)
        assert isinstance(exc, KeyError)
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        text += "".join(getattr(exc, "__notes__", []))
        # the user sees the worker-side frame of the failing method (SPEC §2.3)
        assert "in fail" in text and "raise KeyError(message)" in text, text
    finally:
        w.stop()


def test_no_child_process_left_after_stop(mode):
    before = child_pids()
    workers = [CounterWorker.options(mode=mode).init() for _ in range(2)]
    for w in workers:
        assert w.incr().result(timeout=30) == 1
    if mode == "process":
        assert len(child_pids() - before) >= 1
    for w in workers:
        w.stop()
    assert wait_until(lambda: child_pids() <= before, timeout=10), child_pids() - before


def test_calls_racing_with_stop_are_never_lost(concurrent_mode):
    """Submitters race stop(): every call either raises WorkerStoppedError or gets a future
    that ends resolved or cancelled (SPEC §13: nothing is lost)."""
    w = CounterWorker.options(mode=concurrent_mode).init()
    futures: list = []
    refused = []
    go = threading.Event()

    def submitter():
        go.wait()
        mine = []
        try:
            for _ in range(2000):
                mine.append(w.incr())
        except WorkerStoppedError:
            refused.append(True)
        futures.extend(mine)

    threads = [threading.Thread(target=submitter) for _ in range(3)]
    for t in threads:
        t.start()
    go.set()
    time.sleep(0.01)
    w.stop(timeout=10)
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads)
    _, not_done = cf.wait(futures, timeout=10)
    assert not not_done, f"{len(not_done)} futures left pending"
    results = sorted(f.result() for f in futures if not f.cancelled())
    assert results == list(range(1, len(results) + 1))  # each accepted call ran exactly once


def test_no_file_descriptor_left_after_stop(mode):
    """Event loops (asyncio mode, async methods in other modes), pipes and processes are released."""
    import asyncio

    class AsyncUser:
        async def work(self) -> int:
            await asyncio.sleep(0)
            return 1

    W = worker(AsyncUser).options(mode=mode)
    warm = W.init()  # first use may open lazily-created, process-wide resources
    warm.work().result(timeout=30)
    warm.stop()
    before = open_fds()
    workers = [W.init() for _ in range(3)]
    for w in workers:
        assert w.work().result(timeout=30) == 1
    for w in workers:
        w.stop()
    assert wait_until(lambda: open_fds() <= before, timeout=10), (before, open_fds())
