"""What a process worker sends back (issue 10, items 6 and 12): a result or exception the
parent cannot unpickle fails only its call (naming method and type) and the worker keeps
serving; an outcome that belongs to no expected call breaks the worker loudly and is never
delivered as another call's result.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from concurry import WorkerCrashedError, worker
from conftest import process_alive, wait_until

CHILD_ONLY = textwrap.dedent(
    """
    class Thing:
        def __init__(self, value):
            self.value = value

    class ChildOnlyError(Exception):
        pass
    """
)


def _explode(text: str):
    raise ValueError(text)


class Unloadable:
    """Pickles fine; unpickling it raises (in whichever process loads it)."""

    def __reduce__(self):
        return (_explode, ("this object refuses to be unpickled",))


class Sender:
    def __init__(self, folder: str):
        self.folder = folder

    def thing(self, value: int):
        if self.folder not in sys.path:  # only this process can import the module
            sys.path.insert(0, self.folder)
        import childonly_mod

        return childonly_mod.Thing(value)

    def raise_child_only(self):
        if self.folder not in sys.path:
            sys.path.insert(0, self.folder)
        import childonly_mod

        raise childonly_mod.ChildOnlyError("only the worker knows this type")

    def unloadable(self):
        return Unloadable()

    def echo(self, value):
        return value

    def pid(self) -> int:
        return os.getpid()

    def fork(self, path: str) -> str:
        pid = os.fork()
        # The copy's pid is written by the copy itself, before its stray outcome can break the
        # worker (whose process may then be gone before it writes anything), and whole at once:
        # the test reads it as soon as it exists.
        if pid == 0:
            Path(path + ".tmp").write_text(str(os.getpid()))
            os.replace(path + ".tmp", path)
            return "from the forked copy"  # returns into the worker's loop: a user error
        return "from the worker"


SenderWorker = worker(Sender)


@pytest.fixture
def folder(tmp_path) -> str:
    (tmp_path / "childonly_mod.py").write_text(CHILD_ONLY)
    return str(tmp_path)


@pytest.mark.timeout(60)
def test_result_of_a_class_only_the_child_can_import_fails_only_that_call(folder):
    w = SenderWorker.options(mode="process").init(folder)
    try:
        pid = w.pid().result(timeout=30)
        before, bad, after = w.echo(1), w.thing(5), w.echo(2)  # in flight together
        with pytest.raises(RuntimeError, match=r"Sender\.thing.*childonly_mod\.Thing.*cannot be unpickled"):
            bad.result(timeout=30)
        assert before.result(timeout=30) == 1 and after.result(timeout=30) == 2
        assert w.pid().result(timeout=30) == pid  # the same worker keeps serving
    finally:
        w.stop()


@pytest.mark.timeout(60)
def test_result_whose_unpickling_raises_fails_only_that_call(folder):
    w = SenderWorker.options(mode="process").init(folder)
    try:
        calls = [w.unloadable() if i % 2 else w.echo(i) for i in range(10)]
        for i, future in enumerate(calls):
            if i % 2:
                with pytest.raises(RuntimeError, match=r"Sender\.unloadable.*refuses to be unpickled"):
                    future.result(timeout=30)
            else:
                assert future.result(timeout=30) == i
        assert w.echo("still").result(timeout=30) == "still"
    finally:
        w.stop()


@pytest.mark.timeout(60)
def test_exception_only_the_child_can_unpickle_fails_that_call_naming_method_and_type(folder):
    w = SenderWorker.options(mode="process").init(folder)
    try:
        with pytest.raises(RuntimeError, match=r"Sender\.raise_child_only.*ChildOnlyError.*only the worker"):
            w.raise_child_only().result(timeout=30)
        assert w.echo(3).result(timeout=30) == 3
    finally:
        w.stop()


@pytest.mark.timeout(60)
def test_pool_worker_keeps_serving_after_an_unloadable_result(folder):
    pool = SenderWorker.options(mode="process", max_workers=2).init(folder)
    try:
        pids = {pool.pid().result(timeout=30) for _ in range(6)}
        for _ in range(4):
            with pytest.raises(RuntimeError, match="cannot be unpickled"):
                pool.thing(1).result(timeout=30)
        assert [pool.echo(i).result(timeout=30) for i in range(4)] == [0, 1, 2, 3]
        assert {pool.pid().result(timeout=30) for _ in range(6)} <= pids  # nobody was replaced
    finally:
        pool.stop()


@pytest.mark.timeout(60)
def test_a_stray_outcome_breaks_the_worker_and_is_never_another_calls_result(tmp_path):
    w = SenderWorker.options(mode="process").init(str(tmp_path))
    marker = tmp_path / "forked"
    try:
        calls = [w.fork(str(marker)), *(w.echo(i) for i in range(20))]
        outcomes = []
        for future in calls:
            try:
                outcomes.append(future.result(timeout=30))
            except WorkerCrashedError as exc:
                outcomes.append(exc)
        assert outcomes[0] == "from the worker" or isinstance(outcomes[0], WorkerCrashedError)
        for i, outcome in enumerate(outcomes[1:]):  # each call gets its own result or an error
            assert outcome == i or isinstance(outcome, WorkerCrashedError)
        # The stray may arrive after every call above has its result; the worker breaks then.
        # (The forked copy also reads the worker's socket, so it may take a call, or half of
        # one: the worker then fails as crashed rather than as "broken". Either way no call
        # ever gets another call's result.)
        def broken() -> bool:
            try:
                assert w.echo(7).result(timeout=30) == 7  # its own result, or the break
            except WorkerCrashedError:
                return True
            return False

        assert wait_until(broken, timeout=20)
        with pytest.raises(WorkerCrashedError):
            w.echo(0).result(timeout=30)
        assert wait_until(marker.exists, timeout=10)
        assert wait_until(lambda: not process_alive(int(marker.read_text())), timeout=10)
    finally:
        w.stop()
