"""What a user sees of a handle in a REPL or notebook: ``dir()``, ``inspect.signature``, ``help()``.

Every kind of handle (one worker in each mode, pools, on-demand pools, TaskWorker) lists the
worker class's public methods, and each method carries its name, docstring and signature
(without ``self``). ``@task`` objects answer ``pool_stats()`` like pools.
"""

# No ``from __future__ import annotations``: the signatures compared below show real types.
import contextlib
import inspect
import io
import pydoc

import pydantic
import pytest

from concurry import TaskWorker, Worker, task, worker


@worker
class Counter:
    """Counts what it is given."""

    def __init__(self, start: int = 0):
        self.total = start

    def add(self, x: int, times: int = 1) -> int:
        """Add ``x`` ``times`` times; returns the new total."""
        self.total += x * times
        return self.total

    async def fetch(self, key: str, *, default: str = "") -> str:
        """Look ``key`` up (asynchronously)."""
        return f"{key}:{default}"

    @staticmethod
    def double(value: int) -> int:
        return 2 * value

    @classmethod
    def kind(cls, label: str) -> str:
        return f"{cls.__name__}/{label}"

    def _helper(self) -> None:
        """Private: not part of what the handle shows."""


HANDLES = {
    "sync": {"mode": "sync"},
    "thread": {"mode": "thread"},
    "asyncio": {"mode": "asyncio"},
    "process": {"mode": "process"},
    "thread-pool": {"mode": "thread", "max_workers": 2},
    "process-pool": {"mode": "process", "max_workers": 2},
    "on-demand": {"mode": "thread", "on_demand": True, "max_workers": 2},
    "blocking": {"mode": "thread", "blocking": True},
}


@pytest.fixture(params=list(HANDLES), ids=list(HANDLES))
def handle(request):
    h = Counter.options(**HANDLES[request.param]).init()
    yield h
    h.stop()


def public(names: list[str]) -> set[str]:
    return {name for name in names if not name.startswith("_")}


def help_text(obj) -> str:
    """What ``help(obj)`` prints (stdout is not a terminal, so pydoc uses no pager)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        help(obj)
    return pydoc.plain(out.getvalue())


def test_dir_lists_the_public_methods(handle):
    names = dir(handle)
    assert {"add", "fetch", "double", "kind"} <= public(names), "tab completion needs the methods"
    assert "stop" in names
    assert "_helper" not in names and "total" not in names


def test_methods_carry_name_doc_and_signature_without_self(handle):
    assert handle.add.__name__ == "add"
    assert handle.add.__qualname__ == "Counter.add"
    assert handle.add.__doc__ == "Add ``x`` ``times`` times; returns the new total."
    assert str(inspect.signature(handle.add)) == "(x: int, times: int = 1) -> int"
    assert str(inspect.signature(handle.fetch)) == "(key: str, *, default: str = '') -> str"
    assert str(inspect.signature(handle.double)) == "(value: int) -> int"
    assert str(inspect.signature(handle.kind)) == "(label: str) -> str"
    # the signature binds what the method accepts, and refuses what it does not
    inspect.signature(handle.add).bind(3, times=2)
    with pytest.raises(TypeError):
        inspect.signature(handle.add).bind(1, 2, 3)


def test_methods_still_work_and_are_built_once(handle):
    assert handle.add is handle.add
    result = handle.add(2, times=3)
    blocking = not hasattr(result, "result")
    assert (result if blocking else result.result(timeout=30)) == 6
    fetched = handle.fetch("k", default="d")
    assert (fetched if blocking else fetched.result(timeout=30)) == "k:d"


def test_help_on_a_handle_shows_the_class_docstring_and_methods(handle):
    text = help_text(handle)
    assert "Counter" in text
    assert "Counts what it is given." in text
    assert "add(x: int, times: int = 1) -> int" in text
    assert "Add ``x`` ``times`` times; returns the new total." in text
    assert "fetch(key: str, *, default: str = '') -> str" in text
    assert "stop(" in text
    assert "_helper" not in text


def test_help_on_a_method_shows_its_signature_and_doc(handle):
    text = help_text(handle.add)
    assert "add(x: int, times: int = 1) -> int" in text
    assert "Add ``x`` ``times`` times" in text


def test_repr_is_unchanged_by_introspection():
    with Counter.options(mode="thread").init() as h:
        assert repr(h).startswith("<thread worker Counter#")


def test_worker_subclass_handle_lists_only_the_users_methods():
    class Greeter(Worker):
        """Says hello."""

        def greet(self, name: str) -> str:
            return f"hello {name}"

    with Greeter.options(mode="thread").init() as g:
        assert "greet" in dir(g)
        assert "options" not in dir(g) and "init" not in dir(g), "the class API is not a worker method"
        assert str(inspect.signature(g.greet)) == "(name: str) -> str"
        assert "Says hello." in help_text(g)
        assert g.greet("Ada").result(timeout=30) == "hello Ada"


def test_pydantic_worker_lists_its_own_methods_not_the_models():
    @worker
    class Scorer(pydantic.BaseModel):
        """Scores things."""

        weight: float = 1.0

        def score(self, x: float) -> float:
            """Weighted score."""
            return self.weight * x

    with Scorer.options(mode="thread").init(weight=2.0) as s:
        names = public(dir(s))
        assert "score" in names
        assert "model_dump" not in names, "pydantic's own methods would bury the user's"
        assert str(inspect.signature(s.score)) == "(x: float) -> float"
        assert s.score(3.0).result(timeout=30) == 6.0
        assert s.model_dump().result(timeout=30) == {"weight": 2.0}  # still callable


def test_methods_added_to_the_class_later_are_still_described():
    @worker
    class Late:
        def first(self) -> int:
            return 1

    def second(self, y: int) -> int:
        """Added after the first handle."""
        return y

    with Late.options(mode="thread").init() as before:
        Late.second = second
        assert before.second.__doc__ == "Added after the first handle."
        assert str(inspect.signature(before.second)) == "(y: int) -> int"
        assert before.second(5).result(timeout=30) == 5


@pytest.mark.parametrize("options", [{"mode": "thread"}, {"mode": "thread", "max_workers": 2}])
def test_taskworker_handles_show_the_executor_api(options):
    with TaskWorker.options(**options).init() as tw:
        assert {"submit", "map", "shutdown", "stop"} <= public(dir(tw))
        assert tw.submit(pow, 2, 5).result(timeout=30) == 32
        assert "submit(" in help_text(tw)


# ---- @task pool_stats ----


def double(x: int) -> int:
    return 2 * x


def test_task_pool_stats_before_the_first_call_starts_nothing():
    t = task(mode="thread", max_workers=2)(double)
    stats = t.pool_stats()
    assert stats["started"] is False and stats["workers"] == [] and stats["unfinished"] == 0
    assert stats["task"] == "double" and stats["mode"] == "thread"
    assert t._executor is None, "asking for statistics must not start workers"
    t.stop()


def test_task_pool_stats_on_a_pool_is_the_pools():
    t = task(mode="thread", max_workers=2)(double)
    try:
        assert [t(i).result(timeout=30) for i in range(4)] == [0, 2, 4, 6]
        stats = t.pool_stats()
        pool_stats = t._executor.pool_stats()
        assert stats["started"] is True and stats["task"] == "double"
        assert {k: v for k, v in stats.items() if k not in ("task", "started")}.keys() == pool_stats.keys()
        assert stats["total"] == 4 and len(stats["workers"]) == 2
        assert stats["load_balancing"] == "round_robin"
    finally:
        t.stop()
    assert t.pool_stats()["stopped"] is True


def test_task_pool_stats_on_an_on_demand_pool():
    t = task(mode="thread", on_demand=True, max_workers=2)(double)
    try:
        assert t(3).result(timeout=30) == 6
        stats = t.pool_stats()
        assert stats["on_demand"] is True and stats["total"] == 1 and stats["max_workers"] == 2
    finally:
        t.stop()


@pytest.mark.parametrize("mode", ["sync", "thread", "asyncio", "process"])
def test_task_pool_stats_on_a_single_worker_is_a_pool_of_one(mode):
    t = task(mode=mode)(double)
    try:
        assert t(4).result(timeout=30) == 8
        stats = t.pool_stats()
        assert stats["started"] is True and stats["stopped"] is False and stats["mode"] == mode
        [entry] = stats["workers"]
        assert entry["state"] == "running" and entry["worker"].startswith("TaskWorker#")
        assert {"unfinished", "in_backend", "waiting", "restarts"} <= entry.keys()
    finally:
        t.stop()
    stats = t.pool_stats()
    assert stats["stopped"] is True and stats["workers"] == []
