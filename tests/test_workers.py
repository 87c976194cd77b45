"""Workers: definition styles, actor semantics, lifecycle and stop (SPEC §2.1-§2.4, §13)."""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
import time

import pytest

from concurry import BaseFuture, Worker, worker

# ---- classes used by the tests (module level, so process mode can import them) ----

class Counter:
    """Counts."""

    def __init__(self, start: int = 0):
        self.count = start

    def incr(self, by: int = 1) -> int:
        self.count += by
        return self.count

    def get(self) -> int:
        return self.count

    def where(self) -> tuple[int, int]:
        return os.getpid(), threading.get_ident()

    def sleep(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def fail(self, message: str) -> None:
        raise KeyError(message)

    def _private(self) -> int:
        return 1


CounterWorker = worker(Counter)


@worker(mode="thread")
class Decorated:
    """Decorated with options."""

    def __init__(self, name: str):
        self.name = name

    def hello(self) -> str:
        return f"hello {self.name}"


class Subclassed(Worker):
    def __init__(self, value: int = 7):
        self.value = value

    def value_plus(self, n: int) -> int:
        return self.value + n


class BrokenInit:
    def __init__(self, fail: bool = True):
        if fail:
            raise ZeroDivisionError("broken __init__ on purpose")

    def ping(self) -> str:
        return "pong"


class LookupErrorInit:
    def __init__(self):
        raise LookupError("no such thing")


class Recorder:
    def __init__(self):
        self.seen: list[int] = []

    def record(self, i: int) -> None:
        self.seen.append(i)

    def items(self) -> list[int]:
        return list(self.seen)


class Empty:
    def ping(self) -> str:
        return "pong"


class Blocker:
    """Blocks on an event the test owns (thread / asyncio modes)."""

    def __init__(self, gate: threading.Event):
        self.gate = gate

    def wait_gate(self) -> str:
        self.gate.wait(10)
        return "released"

    def quick(self) -> str:
        return "quick"


class OwnStop:
    """Defines its own stop(), which must run when the handle stops (as in the seed's APIWorker)."""

    stopped_flags: list[str] = []

    def ping(self) -> str:
        return "pong"

    def stop(self) -> None:
        OwnStop.stopped_flags.append("stopped")


# ---- definition styles (§2.1, §2.2) ----

def test_decorator_keeps_name_doc_and_methods():
    assert CounterWorker.__name__ == "Counter"
    assert CounterWorker.__doc__ == "Counts."
    assert CounterWorker.__qualname__ == "Counter"
    for name in ("incr", "get", "where", "sleep", "fail"):
        assert callable(getattr(CounterWorker, name))
    assert Decorated.__name__ == "Decorated"
    assert Decorated.__doc__ == "Decorated with options."


def test_bare_decorator_init_options_and_direct_call(mode):
    w = CounterWorker.options(mode=mode).init(5)
    try:
        assert w.incr().result(timeout=10) == 6
        assert w.incr(by=4).result(timeout=10) == 10
    finally:
        w.stop()
    w2 = CounterWorker.options(mode=mode).init(start=3)
    with w2:
        assert w2.get().result(timeout=10) == 3


def test_calling_decorated_class_directly_is_init():
    w = Decorated("direct")
    try:
        assert not isinstance(w, Decorated.__mro__[1])  # a handle, not a bare instance
        assert w.hello().result(timeout=10) == "hello direct"
        assert w.mode == "thread"
    finally:
        w.stop()


def test_decorator_options_become_class_defaults():
    w = Decorated.init("x")
    try:
        assert w.mode == "thread"
        assert w.hello().result(timeout=10) == "hello x"
    finally:
        w.stop()


def test_default_mode_is_sync_for_bare_decorator():
    w = CounterWorker.init()
    try:
        assert w.mode == "sync"
        # sync: the call ran in the caller's thread, during the call
        future = w.where()
        assert future.done()
        assert future.result() == (os.getpid(), threading.get_ident())
    finally:
        w.stop()


def test_worker_subclass_behaves_like_decorator(mode):
    w = Subclassed.options(mode=mode).init(10)
    try:
        assert w.value_plus(5).result(timeout=10) == 15
    finally:
        w.stop()
    w2 = Subclassed(value=1)
    try:
        assert w2.value_plus(1).result(timeout=10) == 2
    finally:
        w2.stop()


def test_options_never_mutate_the_class():
    before = dict(Decorated.__concurry_options__)
    builder = Decorated.options(mode="sync", blocking=True)
    assert Decorated.__concurry_options__ == before
    w = Decorated.init("a")
    try:
        assert w.mode == "thread"
    finally:
        w.stop()
    w = builder.init("b")
    try:
        assert w.mode == "sync"
        assert w.hello() == "hello b"  # blocking
    finally:
        w.stop()


def test_options_can_be_chained():
    w = CounterWorker.options(mode="thread").options(blocking=True).init(1)
    try:
        assert w.mode == "thread"
        assert w.incr() == 2
    finally:
        w.stop()


def test_decorating_a_subclass_of_a_worker_class_and_stacking_decorators():
    def tag(cls):
        cls.tagged = True
        return cls

    @tag
    @worker(mode="thread")
    class Base:
        def who(self) -> str:
            return "base"

    @worker(mode="sync")
    class Child(Base):
        def who(self) -> str:
            return "child"

    assert Base.tagged and Child.tagged
    b, c = Base.init(), Child.init()
    try:
        assert b.mode == "thread" and b.who().result(timeout=10) == "base"
        assert c.mode == "sync" and c.who().result(timeout=10) == "child"
    finally:
        b.stop()
        c.stop()
    # decorating the child did not change the parent's defaults
    assert Base.__concurry_options__["mode"].value == "thread"


def test_worker_decorator_rejects_functions():
    with pytest.raises(TypeError, match="@worker decorates classes"):
        worker(lambda: None)
    with pytest.raises(TypeError, match="use @task for functions"):
        worker(mode="thread")(len)


# ---- actor semantics (§2.3) ----

def test_calls_return_futures_and_state_persists(mode):
    w = CounterWorker.options(mode=mode).init()
    try:
        futures = [w.incr() for _ in range(50)]
        assert all(isinstance(f, BaseFuture) for f in futures)
        assert [f.result(timeout=10) for f in futures] == list(range(1, 51))
        assert w.get().result(timeout=10) == 50
    finally:
        w.stop()


def test_calls_run_in_submission_order(mode):
    w = worker(Recorder).options(mode=mode).init()
    try:
        for i in range(300):
            w.record(i)
        assert w.items().result(timeout=20) == list(range(300))
    finally:
        w.stop()


def test_calls_from_many_threads_all_run_once(concurrent_mode):
    w = CounterWorker.options(mode=concurrent_mode).init()
    try:
        def hammer():
            return [w.incr() for _ in range(100)]

        with cf.ThreadPoolExecutor(4) as pool:
            batches = list(pool.map(lambda _: hammer(), range(4)))
        results = sorted(f.result(timeout=20) for batch in batches for f in batch)
        assert results == list(range(1, 401))
    finally:
        w.stop()


def test_where_calls_run(mode):
    w = CounterWorker.options(mode=mode).init()
    try:
        pid, tid = w.where().result(timeout=10)
        if mode == "sync":
            assert (pid, tid) == (os.getpid(), threading.get_ident())
        elif mode in ("thread", "asyncio"):
            assert pid == os.getpid()
            assert tid != threading.get_ident()
            # every call runs on the same dedicated thread
            assert w.where().result(timeout=10) == (pid, tid)
        else:
            assert pid != os.getpid()
    finally:
        w.stop()


def test_method_exception_keeps_type_and_message(mode):
    w = CounterWorker.options(mode=mode).init()
    try:
        future = w.fail("boom")
        with pytest.raises(KeyError, match="boom"):
            future.result(timeout=10)
        assert isinstance(future.exception(timeout=10), KeyError)
        # the worker survives a failed call
        assert w.incr().result(timeout=10) == 1
    finally:
        w.stop()


def test_blocking_true_returns_results_and_raises(mode):
    w = CounterWorker.options(mode=mode, blocking=True).init()
    try:
        assert w.incr() == 1
        assert w.incr(2) == 3
        with pytest.raises(KeyError, match="nope"):
            w.fail("nope")
    finally:
        w.stop()


def test_private_and_missing_methods_raise_attribute_error_in_caller(mode):
    w = CounterWorker.options(mode=mode).init()
    try:
        with pytest.raises(AttributeError, match="'_private' is private"):
            w._private()
        with pytest.raises(AttributeError, match="has no method 'nope'") as info:
            w.nope()
        # the message names the accepted methods
        assert "incr" in str(info.value) and "get" in str(info.value)
        assert w.incr().result(timeout=10) == 1
    finally:
        w.stop()


def test_non_method_attribute_is_not_callable_through_handle():
    @worker(mode="thread")
    class WithAttr:
        limit = 5

        def go(self) -> int:
            return self.limit

    w = WithAttr.init()
    try:
        not_method = r"WithAttr\.limit is not a method; its public methods are: go"
        with pytest.raises(AttributeError, match=not_method):
            w.limit  # noqa: B018
        assert w.go().result(timeout=10) == 5
    finally:
        w.stop()
