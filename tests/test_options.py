"""Options and bad input (SPEC §2.2, issue #2 "Bad input"), including hypothesis fuzzing of options()."""

from __future__ import annotations

import math
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from concurry import ExecutionMode, Worker, WorkerStoppedError, worker
from concurry.config import resolve_options
from concurry.options import ACCEPTED_OPTIONS, CORE_OPTIONS


class Plain:
    def __init__(self, a: int, b: int = 2):
        self.a, self.b = a, b

    def total(self) -> int:
        return self.a + self.b

    def _hidden(self) -> None:
        pass


PlainWorker = worker(Plain)


@worker(mode="sync")
class SyncDefault:
    def ping(self) -> str:
        return "pong"


@worker(mode="asyncio")
class AsyncioDefault:
    def ping(self) -> str:
        return "pong"


# ---- modes ----

@pytest.mark.parametrize(
    "given, expected",
    [
        ("sync", "sync"), ("SYNC", "sync"), ("synchronous", "sync"),
        ("thread", "thread"), ("threads", "thread"), ("Threading", "thread"),
        ("asyncio", "asyncio"), ("async", "asyncio"), (" AsyncIO ", "asyncio"),
        ("process", "process"), ("proc", "process"), ("processes", "process"), ("mp", "process"),
        ("ray", "ray"),
        (ExecutionMode.THREAD, "thread"), (ExecutionMode.SYNC, "sync"),
    ],
)
def test_mode_aliases_are_accepted(given, expected):
    builder = PlainWorker.options(mode=given)
    assert resolve_options(builder._options).mode.value == expected


def test_mode_alias_creates_that_kind_of_worker():
    w = PlainWorker.options(mode="Threads").init(1)
    try:
        assert w.mode == "thread"
        assert w.total().result(timeout=10) == 3
    finally:
        w.stop()


@pytest.mark.parametrize("bad", ["warp", "", "threadz", 3, None, ["thread"]])
def test_bad_mode_name(bad):
    with pytest.raises(ValueError) as info:
        PlainWorker.options(mode=bad)
    message = str(info.value)
    assert f"mode={bad!r} is not accepted" in message
    for accepted in ("'sync'", "'thread'", "'asyncio'", "'process'", "'ray'"):
        assert accepted in message
    with pytest.raises(ValueError, match="is not accepted"):
        worker(mode=bad)


# ---- unknown options ----

def test_unknown_option_names_it_and_lists_accepted():
    with pytest.raises(ValueError) as info:
        PlainWorker.options(mode="thread", max_worker=3)
    message = str(info.value)
    assert "unknown worker option 'max_worker'" in message
    assert "Did you mean 'max_workers'?" in message
    for name in CORE_OPTIONS:  # mp_context applies to process workers only
        assert (name in message) == (name != "mp_context")
    with pytest.raises(ValueError, match="unknown worker option 'colour'"):
        worker(colour="red")
    with pytest.raises(ValueError, match="unknown worker option 'bogus'"):
        @worker(mode="thread", bogus=True)
        class Nope:
            pass


def test_unknown_option_on_worker_subclass_and_builder():
    class Sub(Worker):
        def ping(self) -> str:
            return "pong"

    with pytest.raises(ValueError, match="unknown worker option 'timeout'"):
        Sub.options(timeout=3)
    with pytest.raises(ValueError, match="unknown worker option 'speed'"):
        Sub.options(mode="thread").options(speed=3)


# ---- max_workers for single-thread modes ----

@pytest.mark.parametrize("m", ["sync", "asyncio", "synchronous", "async"])
@pytest.mark.parametrize("n", [2, 8])
def test_max_workers_above_one_rejected_for_sync_and_asyncio(m, n):
    with pytest.raises(ValueError) as info:
        PlainWorker.options(mode=m, max_workers=n)
    message = str(info.value)
    assert f"max_workers={n} is not accepted" in message
    assert "only max_workers=1 is allowed" in message
    assert "'thread'" in message and "'process'" in message


def test_max_workers_one_is_fine_for_sync_and_asyncio():
    for m in ("sync", "asyncio"):
        w = PlainWorker.options(mode=m, max_workers=1).init(1)
        try:
            assert w.total().result(timeout=10) == 3
        finally:
            w.stop()


def test_max_workers_rejected_when_mode_comes_from_decorator():
    # mode from the decorator, max_workers from options(): still rejected at options() time
    with pytest.raises(ValueError, match="max_workers=4 is not accepted for mode='sync'"):
        SyncDefault.options(max_workers=4)
    with pytest.raises(ValueError, match="max_workers=3 is not accepted for mode='asyncio'"):
        AsyncioDefault.options(max_workers=3)
    with pytest.raises(ValueError, match="max_workers=2 is not accepted for mode='asyncio'"):
        PlainWorker.options(mode="asyncio").options(max_workers=2)
    with pytest.raises(ValueError, match="max_workers=2 is not accepted for mode='sync'"):
        PlainWorker.options(max_workers=2).options(mode="sync")


def test_on_demand_rejected_for_sync_and_asyncio():
    with pytest.raises(ValueError, match="on_demand=True is not accepted for mode='sync'"):
        PlainWorker.options(mode="sync", on_demand=True)


@pytest.mark.parametrize("m", ["thread", "process"])
def test_max_workers_zero_needs_on_demand(m):
    # SPEC §4 gives max_workers=0 a meaning only with on_demand=True
    with pytest.raises(ValueError) as info:
        PlainWorker.options(mode=m, max_workers=0)
    message = str(info.value)
    assert "max_workers=0 is only accepted together with on_demand=True" in message
    assert "max_workers=1 for one worker" in message
    with pytest.raises(ValueError, match="max_workers=0 is only accepted"):
        worker(mode=m, max_workers=0, on_demand=False)(Plain)
    with pytest.raises(ValueError, match="max_workers=0 is only accepted"):
        worker(mode=m, max_workers=0)(Plain).init(1)  # the decorator alone: refused by init()
    with pytest.raises(ValueError, match="max_workers=0 is only accepted"):
        worker(on_demand=True)(Plain).options(on_demand=False, max_workers=0)
    # with on_demand it is accepted, whichever layer gives on_demand
    assert resolve_options(PlainWorker.options(mode=m, max_workers=0, on_demand=True)._options).on_demand
    assert resolve_options(worker(on_demand=True)(Plain).options(mode=m, max_workers=0)._options).on_demand


@pytest.mark.parametrize("bad", [-1, 1.5, "4", True, None])
def test_max_workers_type_and_range(bad):
    with pytest.raises((TypeError, ValueError), match=r"max_workers must be an int >= 0"):
        PlainWorker.options(mode="thread", max_workers=bad)


# ---- other option values ----

@pytest.mark.parametrize("name", ["blocking", "unwrap_futures", "on_demand"])
@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_bool_options(name, bad):
    with pytest.raises(TypeError, match=f"{name} must be True or False, got {bad!r}"):
        PlainWorker.options(**{name: bad})


@pytest.mark.parametrize("bad", [42, "ValueError", object(), int])
def test_non_callable_retry_on(bad):
    with pytest.raises(TypeError) as info:
        PlainWorker.options(mode="thread", retry_on=bad)
    assert "retry_on must be an exception class or a callable" in str(info.value)
    assert repr(bad) in str(info.value)


def test_retry_options_accepted_and_stored():
    builder = PlainWorker.options(
        mode="thread",
        num_retries={"*": 2, "total": 5},
        retry_on=[ValueError, lambda exception, **ctx: True],
        retry_algorithm="linear",
        retry_wait=0.5,
        retry_jitter=0.1,
        retry_until=lambda result, **ctx: result > 0,
    )
    options = resolve_options(builder._options)
    assert options.retry.num_retries == {"*": 2, "total": 5}
    assert options.retry.retry_algorithm.value == "linear"
    assert options.retry.retry_wait == 0.5 and options.retry.retry_jitter == 0.1


@pytest.mark.parametrize(
    "option, bad, error, fragment",
    [
        ("num_retries", -1, ValueError, "num_retries must be an int >= 0"),
        ("num_retries", "3", TypeError, "num_retries must be an int >= 0"),
        ("num_retries", {"total": -2}, ValueError, "num_retries['total'] must be an int >= 0"),
        ("retry_algorithm", "quadratic", ValueError, "retry_algorithm='quadratic' is not accepted"),
        ("retry_wait", -0.1, ValueError, "retry_wait must be a finite number >= 0.0"),
        ("retry_wait", float("nan"), ValueError, "retry_wait must be a finite number"),
        ("retry_wait", "1s", TypeError, "retry_wait must be a finite number"),
        ("retry_jitter", 1.5, ValueError, "retry_jitter must be a finite number in [0.0, 1.0]"),
        ("retry_until", 5, TypeError, "retry_until must be a callable"),
        ("max_queued_tasks", 0, ValueError, "max_queued_tasks must be an int >= 1"),
        ("load_balancing", "fastest", ValueError, "load_balancing='fastest' is not accepted"),
        ("mp_context", "threads", ValueError, "mp_context='threads' is not accepted"),
        ("limits", 5, TypeError, "limits must be a LimitSet"),
    ],
)
def test_bad_option_values(option, bad, error, fragment):
    with pytest.raises(error) as info:
        PlainWorker.options(mode="thread", **{option: bad})
    assert fragment in str(info.value)


@pytest.mark.parametrize("huge", [10**400, -(10**400)])
def test_huge_numbers_give_clear_errors(huge):
    with pytest.raises(ValueError, match="retry_wait"):
        PlainWorker.options(retry_wait=huge)


@pytest.mark.parametrize("option", ["retry_wait", "retry_jitter"])
def test_infinite_values_are_rejected(option):
    with pytest.raises(ValueError, match=f"{option} must be a finite number"):
        PlainWorker.options(**{option: math.inf})


def test_infinite_stop_timeout_is_rejected_in_config():
    from concurry import global_config

    with pytest.raises(ValueError, match="stop_timeout must be a finite number"):
        global_config.thread.stop_timeout = math.inf


# ---- methods, constructor, stop ----

def test_missing_and_private_methods(mode):
    w = PlainWorker.options(mode=mode).init(1)
    try:
        missing = r"Plain has no method 'totl'; its public methods are: total"
        with pytest.raises(AttributeError, match=missing):
            w.totl()
        with pytest.raises(AttributeError, match=r"'_hidden' is private; only public methods of Plain"):
            w._hidden()
    finally:
        w.stop()


def test_wrong_constructor_arguments(mode):
    with pytest.raises(TypeError, match=r"Plain\.init\(\): missing a required argument: 'a'"):
        PlainWorker.options(mode=mode).init()
    with pytest.raises(TypeError, match=r"Plain\.init\(\): got an unexpected keyword argument 'c'"):
        PlainWorker.options(mode=mode).init(1, c=3)


def test_calling_after_stop(mode):
    w = PlainWorker.options(mode=mode).init(1)
    w.stop()
    stopped = r"worker Plain#\d+ is stopped; create a new one with \.init\(\)"
    with pytest.raises(WorkerStoppedError, match=stopped):
        w.total()


def test_ray_mode_without_ray_installed_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # ``import ray`` now fails, as without Ray
    with pytest.raises(ImportError, match=r"pip install 'concurry\[ray\]'"):
        PlainWorker.options(mode="ray").init(1)


# ---- hypothesis: random option values never produce anything but clear errors ----

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=20),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        ["sync", "thread", "threads", "asyncio", "async", "process", "proc", "ray", "SYNC", "round_robin",
         "random", "active", "exponential", "linear", "fixed", "spawn", "fork", "forkserver", "*"]
    ),
    st.sampled_from([ValueError, Exception, KeyError, int, object, len, print, lambda *a, **k: True]),
    st.lists(st.sampled_from([ValueError, 1, "x", len]), max_size=3),
    st.dictionaries(st.sampled_from(["*", "total", 1]), st.integers(-2, 5), max_size=2),
    st.sampled_from(list(ExecutionMode)),
)
_names = st.one_of(st.sampled_from(sorted(ACCEPTED_OPTIONS)), st.text(min_size=1, max_size=10))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_names, _values, max_size=4), st.dictionaries(_names, _values, max_size=2))
def test_fuzz_options_only_clear_errors(first, second):
    try:
        builder = PlainWorker.options(**first).options(**second)
        resolved = resolve_options(builder._options)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        given = {**first, **second}
        named = any(name in message or repr(name) in message for name in given)
        assert named, f"error does not name the option: {message}"
        return
    assert resolved.mode in ExecutionMode
    assert resolved.max_workers >= 0
    if resolved.mode in (ExecutionMode.SYNC, ExecutionMode.ASYNCIO):
        assert resolved.max_workers == 1 and not resolved.on_demand


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(CORE_OPTIONS)), _values, max_size=3))
def test_fuzz_worker_decorator_only_clear_errors(options):
    try:
        worker(**options)
    except (ValueError, TypeError) as exc:
        assert any(name in str(exc) or repr(name) in str(exc) for name in options), str(exc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(ACCEPTED_OPTIONS - {"mode", "max_workers", "on_demand"})),
                       _values, max_size=4))
def test_fuzz_accepted_options_create_working_sync_workers(options):
    """Whatever options() accepts, init() builds a worker that works (sync: cheap to build)."""
    try:
        builder = PlainWorker.options(mode="sync", **options)
    except (ValueError, TypeError) as exc:
        assert any(name in str(exc) for name in options), str(exc)
        return
    w = builder.init(1)
    try:
        result = w.total()
        assert (result if options.get("blocking") is True else result.result()) == 3
    finally:
        w.stop()
