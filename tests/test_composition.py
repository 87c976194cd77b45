"""Composition and future unwrapping (SPEC §2.6)."""

from __future__ import annotations

import concurrent.futures as cf
import threading

import pytest

from concurry import BaseFuture, WorkerStoppedError, worker, wrap_future
from conftest import concurry_threads, wait_until


class Database:
    def __init__(self):
        self.stopped = False

    def query(self, sql: str) -> str:
        return f"rows for {sql}"

    def fail(self) -> None:
        raise PermissionError("db says no")


class Api:
    """Owns a private Database worker, created in __init__ (as in the seed)."""

    def __init__(self, child_mode: str = "thread"):
        self.db = worker(Database).options(mode=child_mode).init()

    def process_request(self, user_id: int) -> str:
        user_data = self.db.query(f"SELECT * FROM users WHERE id={user_id}")
        return f"Processed {user_data.result()}"

    def query_future(self, user_id: int):
        # returns the child's future itself: the caller gets a future it can resolve
        return self.db.query(f"id={user_id}")

    def child_stopped(self) -> bool:
        try:
            self.db.query("x")
        except WorkerStoppedError:
            return True
        return False

    def stop(self) -> None:
        self.db.stop()


class Echo:
    def echo(self, *args, **kwargs):
        return args, kwargs

    def add(self, a: int, b: int) -> int:
        return a + b

    def types(self, *args) -> list[str]:
        return [type(a).__name__ for a in args]

    def boom(self) -> None:
        raise ArithmeticError("upstream failed")


def test_worker_owns_a_worker_and_delegates(mode):
    w = worker(Api).options(mode=mode).init()
    try:
        assert w.process_request(7).result(timeout=10) == "Processed rows for SELECT * FROM users WHERE id=7"
    finally:
        w.stop()


def test_worker_stops_its_child_when_stopped():
    before = set(concurry_threads())
    w = worker(Api).options(mode="thread").init()
    assert w.process_request(1).result(timeout=10).startswith("Processed")
    assert len(concurry_threads()) == len(before) + 2  # parent and child threads
    w.stop()
    assert wait_until(lambda: set(concurry_threads()) <= before)


def test_worker_method_can_stop_its_child(mode):
    w = worker(Api).options(mode=mode).init()
    try:
        assert w.child_stopped().result(timeout=10) is False
    finally:
        w.stop()


def test_method_returning_a_future_gives_a_future_to_the_caller(mode):
    w = worker(Api).options(mode=mode).init()
    try:
        inner = w.query_future(3).result(timeout=10)
        assert isinstance(inner, BaseFuture)
        assert inner.result(timeout=10) == "rows for id=3"
    finally:
        w.stop()


def test_future_as_top_level_argument(mode):
    a = worker(Echo).options(mode=mode).init()
    b = worker(Echo).options(mode=mode).init()
    try:
        first = a.add(1, 2)
        assert b.add(first, 10).result(timeout=10) == 13
        assert b.add(a=first, b=first).result(timeout=10) == 6
        # a future from the same worker, and a chain of them
        chained = a.add(a.add(a.add(1, 1), 1), 1)
        assert chained.result(timeout=10) == 4
    finally:
        a.stop()
        b.stop()


def test_futures_nested_in_containers_are_resolved(mode):
    src = worker(Echo).options(mode=mode).init()
    dst = worker(Echo).options(mode=mode).init()
    try:
        f1, f2 = src.add(1, 1), src.add(2, 2)
        args, kwargs = dst.echo(
            [f1, 5, [f2]], (f1, f2), {f1}, {"a": f2, "b": {"c": f1}}, key=[f2], plain=7
        ).result(timeout=10)
        assert args == ([2, 5, [4]], (2, 4), {2}, {"a": 4, "b": {"c": 2}})
        assert kwargs == {"key": [4], "plain": 7}
        # container types are preserved
        assert dst.types([f1], (f1,), {f1}, {"k": f1}).result(timeout=10) == ["list", "tuple", "set", "dict"]
    finally:
        src.stop()
        dst.stop()


def test_foreign_futures_are_resolved(mode):
    dst = worker(Echo).options(mode=mode).init()
    try:
        plain = cf.Future()
        plain.set_result(20)
        assert dst.add(wrap_future(plain), 1).result(timeout=10) == 21
        assert dst.add(wrap_future(5), wrap_future(6)).result(timeout=10) == 11
        assert dst.add(plain, 2).result(timeout=10) == 22  # a plain cf.Future, unwrapped too
    finally:
        dst.stop()


def test_future_resolving_later_is_waited_for(concurrent_mode):
    dst = worker(Echo).options(mode=concurrent_mode).init()
    try:
        late = cf.Future()
        result = dst.add(wrap_future(late), 1)
        raw = dst.add(1, late)  # the plain pending cf.Future itself
        threading.Timer(0.05, late.set_result, args=(41,)).start()
        assert result.result(timeout=10) == 42
        assert raw.result(timeout=10) == 42
    finally:
        dst.stop()


def test_failed_future_argument_fails_the_dependent_call(mode):
    src = worker(Echo).options(mode=mode).init()
    dst = worker(Echo).options(mode=mode).init()
    try:
        failed = src.boom()
        dependent = dst.add(failed, 1)
        with pytest.raises(ArithmeticError, match="upstream failed"):
            dependent.result(timeout=10)
        nested = dst.echo({"x": [failed]})
        with pytest.raises(ArithmeticError, match="upstream failed"):
            nested.result(timeout=10)
        assert dst.add(1, 1).result(timeout=10) == 2  # the worker is still fine
    finally:
        src.stop()
        dst.stop()


@pytest.mark.parametrize("m", ["sync", "thread", "asyncio"])  # same-memory modes: the object itself
def test_unwrap_futures_false_passes_futures_through(m):
    src = worker(Echo).options(mode="sync").init()
    dst = worker(Echo).options(mode=m, unwrap_futures=False).init()
    try:
        f = src.add(1, 2)
        (got,), _ = dst.echo(f).result(timeout=10)
        assert got is f
    finally:
        src.stop()
        dst.stop()


def test_future_in_constructor_arguments_is_resolved(mode):
    src = worker(Echo).options(mode=mode).init()
    try:
        from test_workers import CounterWorker

        w = CounterWorker.options(mode=mode).init(src.add(40, 2))
        try:
            assert w.get().result(timeout=10) == 42
        finally:
            w.stop()
    finally:
        src.stop()
