"""Retries run next to the instance, in every mode: attempts are counted where the instance
lives (same thread or process), the last failure is raised, ``retry_on`` and ``retry_until``
decide, a retried call holds its worker, and ``stop()`` cuts a long back-off short."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from pathlib import Path

import pytest

from concurry import RetryConfig, RetryValidationError, TaskWorker, global_config, task, temp_config, worker
from conftest import WORKER_SETUP_IDS, WORKER_SETUPS

SETUPS, IDS = WORKER_SETUPS, WORKER_SETUP_IDS
FAST = {"retry_wait": 0.01, "retry_jitter": 0.0, "retry_algorithm": "fixed"}
LONG = {"retry_wait": 60.0, "retry_jitter": 0.0, "retry_algorithm": "fixed"}


class Flaky:
    """Keeps, per call key, every attempt's (time, pid, thread) inside the worker."""

    def __init__(self) -> None:
        self.attempts: dict[str, list[tuple[float, int, int]]] = {}

    def _attempt(self, key: str) -> int:
        log = self.attempts.setdefault(key, [])
        log.append((time.monotonic(), os.getpid(), threading.get_ident()))
        return len(log)

    def fail_then(self, key: str, failures: int, value: object) -> tuple:
        n = self._attempt(key)
        if n <= failures:
            raise ValueError(f"{key}: attempt {n}")
        return value, self.attempts[key]

    async def fail_then_async(self, key: str, failures: int, value: object) -> tuple:
        await asyncio.sleep(0)
        return self.fail_then(key, failures, value)

    def raise_kinds(self, key: str, kinds: list[str]) -> str:
        n = self._attempt(key)
        if n <= len(kinds):
            raise {"ValueError": ValueError, "TypeError": TypeError, "KeyError": KeyError}[kinds[n - 1]](
                f"attempt {n}"
            )
        return f"ok after {n}"

    def count_up(self, key: str) -> int:
        return self._attempt(key)

    def count(self, key: str) -> int:
        return len(self.attempts.get(key, []))

    def stamp(self) -> float:
        return time.monotonic()

    def fail_marking(self, path: str) -> None:
        with open(path, "a") as f:
            f.write(f"{os.getpid()}\n")
        raise ValueError("failed, marked")

    async def fail_marking_async(self, path: str) -> None:
        self.fail_marking(path)


def retry_message_says_retry(exception, attempt, elapsed_time, **ctx) -> bool:
    assert {"method_name", "args", "kwargs"} <= set(ctx)
    return "retry" in str(exception)


def at_least_3(result, **ctx) -> bool:
    return result >= 3


def is_even(result, **ctx) -> bool:
    return result % 2 == 0


def _make(setup, **options):
    m, n = setup
    return worker(Flaky).options(mode=m, max_workers=n, **options).init()


@pytest.fixture(params=SETUPS, ids=IDS)
def setup(request):
    return request.param


def test_attempts_run_inside_the_worker_and_succeed(setup):
    w = _make(setup, num_retries=3, **FAST)
    try:
        value, attempts = w.fail_then("a", 2, "done").result(timeout=30)
        assert value == "done"
        assert len(attempts) == 3  # counted in the instance's own state
        assert len({(pid, tid) for _, pid, tid in attempts}) == 1  # one thread of one process
        if setup[0] == "process":
            assert attempts[0][1] != os.getpid()
        # an async method is retried too
        value, attempts = w.fail_then_async("b", 1, "async done").result(timeout=30)
        assert (value, len(attempts)) == ("async done", 2)
    finally:
        w.stop()


def test_the_last_exception_is_raised_when_attempts_run_out(setup):
    w = _make(setup, num_retries=2, **FAST)
    try:
        with pytest.raises(ValueError, match="z: attempt 3"):
            w.fail_then("z", 10, None).result(timeout=30)
        with pytest.raises(ValueError, match="za: attempt 3"):
            w.fail_then_async("za", 10, None).result(timeout=30)
    finally:
        w.stop()


def test_no_retries_by_default(setup):
    w = _make(setup)
    try:
        with pytest.raises(ValueError, match="attempt 1"):
            w.fail_then("once", 1, None).result(timeout=30)
    finally:
        w.stop()


def test_retry_on_filters_by_class_and_by_callable(setup):
    w = _make(setup, num_retries=5, retry_on=[ValueError, KeyError], **FAST)
    try:
        # ValueError and KeyError are retried; the TypeError is not and ends the call at once
        with pytest.raises(TypeError, match="attempt 3"):
            w.raise_kinds("k", ["ValueError", "KeyError", "TypeError", "ValueError"]).result(timeout=30)
        assert w.raise_kinds("k2", ["KeyError", "ValueError"]).result(timeout=30) == "ok after 3"
    finally:
        w.stop()
    w = _make(setup, num_retries=5, retry_on=retry_message_says_retry, **FAST)
    try:
        assert w.fail_then("retry-me", 2, 1).result(timeout=30)[0] == 1
        with pytest.raises(ValueError, match="attempt 1"):
            w.fail_then("no-no", 2, 1).result(timeout=30)
    finally:
        w.stop()


def test_retry_until_accepts_a_later_result_or_raises_retry_validation_error(setup):
    w = _make(setup, num_retries=5, retry_until=at_least_3, **FAST)
    try:
        assert w.count_up("u").result(timeout=30) == 3
    finally:
        w.stop()
    w = _make(setup, num_retries=1, retry_until=[at_least_3, is_even], **FAST)
    try:
        with pytest.raises(RetryValidationError) as info:
            w.count_up("v").result(timeout=30)
        assert info.value.results == [1, 2]
        assert info.value.validation_errors == ["at_least_3"]
    finally:
        w.stop()


def test_the_back_off_schedule_is_kept_inside_the_worker(setup):
    w = _make(setup, num_retries=3, retry_wait=0.1, retry_jitter=0.0, retry_algorithm="exponential")
    try:
        _, attempts = w.fail_then("s", 3, "ok").result(timeout=30)
        times = [t for t, _, _ in attempts]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # 0.1, 0.2, 0.4 s scheduled; loose lower bounds only (a loaded machine only adds)
        assert [g >= d * 0.9 for g, d in zip(gaps, [0.1, 0.2, 0.4], strict=True)] == [True] * 3
    finally:
        w.stop()


@pytest.mark.parametrize("m", ["thread", "process"])
def test_a_retried_call_holds_its_worker(m):
    w = worker(Flaky).options(mode=m, num_retries=2, retry_wait=0.2, retry_jitter=0.0).init()
    try:
        first = w.fail_then("h", 2, "ok")
        later = w.stamp()
        _, attempts = first.result(timeout=30)
        assert later.result(timeout=30) > attempts[-1][0]  # ran after every attempt of the first
    finally:
        w.stop()


@pytest.mark.timeout(30)
def test_asyncio_other_calls_run_during_an_async_back_off():
    w = worker(Flaky).options(mode="asyncio", num_retries=1, **LONG).init()
    try:
        slow = w.fail_then_async("bo", 5, None)
        deadline = time.monotonic() + 20
        while w.count("bo").result(timeout=20) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        # the first attempt failed and the call waits 60 s: other calls still run meanwhile
        assert w.count_up("other").result(timeout=20) == 1
        assert not slow.done()
    finally:
        w.stop(timeout=20)
    assert slow.done()


def _wait_for_lines(path, n: int) -> list[str]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if os.path.exists(path):
            lines = Path(path).read_text().split()
            if len(lines) >= n:
                return lines
        time.sleep(0.01)
    raise AssertionError(f"{path}: fewer than {n} attempts")


def _assert_ended(future) -> None:
    assert future.done()
    if not future.cancelled():
        assert isinstance(future.exception(timeout=0), ValueError)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("method", ["fail_marking", "fail_marking_async"])
def test_stop_during_a_long_back_off_ends_the_call_promptly(setup, method, tmp_path):
    path = str(tmp_path / "attempts")
    w = _make(setup, num_retries=3, **LONG)
    if setup[0] == "sync":  # the call runs in the caller's thread: call from another one
        box: list = []
        caller = threading.Thread(target=lambda: box.append(getattr(w, method)(path)), daemon=True)
        caller.start()
        _wait_for_lines(path, 1)
        time.sleep(0.2)
        assert caller.is_alive()  # the call waits out its back-off
        w.stop(timeout=50)
        caller.join(20)
        assert not caller.is_alive()
        future = box[0]
    else:
        future = getattr(w, method)(path)
        _wait_for_lines(path, 1)
        time.sleep(0.2)
        assert not future.done()  # the call waits out its back-off
        w.stop(timeout=50)  # would wait out the 60 s back-off: past the test's timeout
    _assert_ended(future)
    if setup[0] == "ray":  # the actor ends the call itself: with its last error, not cancelled
        assert isinstance(future.exception(timeout=0), ValueError)
    assert len(Path(path).read_text().split()) == 1  # no attempt after stop


def flaky_function(path: str, failures: int) -> tuple[int, int]:
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    n = len(Path(path).read_text().split())
    if n <= failures:
        raise ValueError(f"function attempt {n}")
    return n, os.getpid()


async def flaky_async_function(path: str, failures: int) -> tuple[int, int]:
    await asyncio.sleep(0)
    return flaky_function(path, failures)


@pytest.mark.parametrize("m", ["thread", "process"])
def test_taskworker_and_task_retry_the_submitted_function(m, tmp_path):
    tw = TaskWorker.options(mode=m, num_retries=2, **FAST).init()
    try:
        n, pid = tw.submit(flaky_function, str(tmp_path / "a"), 2).result(timeout=30)
        assert n == 3
        assert set((tmp_path / "a").read_text().split()) == {str(pid)}  # every attempt, one process
        assert tw.submit(flaky_async_function, str(tmp_path / "b"), 1).result(timeout=30)[0] == 2
        with pytest.raises(ValueError, match="function attempt 3"):
            tw.submit(flaky_function, str(tmp_path / "c"), 5).result(timeout=30)
    finally:
        tw.stop()
    fn = task(mode=m, num_retries=1, **FAST)(flaky_function)
    try:
        assert fn(str(tmp_path / "d"), 1).result(timeout=30)[0] == 2
    finally:
        fn.stop()


def test_global_config_and_temp_config_set_retries_and_accept_retry_config(setup):
    """Retry options (and RetryConfig) in global_config/temp_config reach workers of every mode;
    the worker's own option still wins, and a mode section's per-method dict without "*" keeps the
    defaults' value for the other methods."""
    m, _ = setup
    with temp_config(global_retry_config=RetryConfig(num_retries=3, **FAST)):
        w = _make(setup)
        try:
            assert w.fail_then("tc", 2, "ok").result(timeout=30)[0] == "ok"
        finally:
            w.stop()
        w = _make(setup, num_retries=0)  # the worker's option wins over the global layer
        try:
            with pytest.raises(ValueError, match="attempt 1"):
                w.fail_then("own", 2, "ok").result(timeout=30)
        finally:
            w.stop()
    assert global_config.defaults.retry_config.num_retries == 0  # restored on exit

    global_config.defaults.retry_config = RetryConfig(num_retries=2, **FAST)
    global_config.section(m).num_retries = {"raise_kinds": 0}
    w = _make(setup)
    try:
        with pytest.raises(ValueError, match="attempt 1"):
            w.raise_kinds("k", ["ValueError"]).result(timeout=30)
        assert w.fail_then("other", 2, "kept").result(timeout=30)[0] == "kept"
    finally:
        w.stop()
    del global_config.defaults.retry_config
    assert "num_retries" not in global_config.defaults.model_fields_set


def test_bad_retry_config_in_global_config_is_refused_and_changes_nothing():
    with pytest.raises(TypeError, match=r"retry_config\['num_retries'\] must be a RetryConfig"):
        global_config.thread.retry_config = {"num_retries": 3}
    with pytest.raises(TypeError, match="retry_config must be a RetryConfig"):
        global_config.thread.retry_config = 3
    bad = temp_config(thread_retry_config=RetryConfig(retry_wait=0.5), thread_num_retries=-1)
    with pytest.raises(ValueError, match="num_retries"), bad:
        pass
    assert global_config.thread.model_fields_set == frozenset()
