"""``global_config`` and ``temp_config`` (SPEC §9) with the precedence of SPEC §2.2."""

from __future__ import annotations

import contextlib
import threading

import pytest

from concurry import ExecutionMode, RetryAlgorithm, global_config, temp_config, worker
from concurry.options import resolve_options


class Thing:
    def __init__(self, gate: threading.Event | None = None):
        self.gate = gate

    def value(self) -> int:
        return 1

    def wait_gate(self) -> str:
        self.gate.wait(10)
        return "released"


ThingWorker = worker(Thing)


@worker(mode="thread", blocking=False)
class DecoratedThing:
    def value(self) -> int:
        return 2


def test_sections_exist_and_have_the_spec_defaults():
    assert {"defaults", "sync", "thread", "asyncio", "process", "ray"} <= set(global_config.SECTIONS)
    d = global_config.defaults
    assert d.blocking is False
    assert d.unwrap_futures is True
    assert d.num_retries == 0
    assert d.retry_algorithm is RetryAlgorithm.EXPONENTIAL
    assert d.retry_wait == 1.0
    assert d.retry_jitter == 0.3
    assert d.load_balancing.value == "round_robin"
    assert d.load_balancing_on_demand.value == "random"
    dump = global_config.defaults.model_dump()
    for key in ("max_workers", "max_queued_tasks", "blocking", "unwrap_futures", "num_retries", "retry_on",
                "retry_algorithm", "retry_wait", "retry_jitter", "retry_until", "stop_timeout"):
        assert key in dump
    assert set(global_config.effective("thread")) == set(dump)


def test_mode_section_falls_back_to_defaults_until_set():
    global_config.defaults.num_retries = 4
    assert global_config.effective("thread")["num_retries"] == 4
    global_config.thread.num_retries = 1
    assert global_config.effective("thread")["num_retries"] == 1
    assert global_config.effective("asyncio")["num_retries"] == 4


def test_assignment_is_validated_and_normalised():
    global_config.thread.retry_algorithm = "LINEAR"
    assert global_config.thread.retry_algorithm is RetryAlgorithm.LINEAR
    with pytest.raises(ValueError, match="max_workers must be an int >= 0"):
        global_config.thread.max_workers = -3
    with pytest.raises((TypeError, ValueError), match="blocking must be True or False"):
        global_config.defaults.blocking = "sometimes"
    with pytest.raises(ValueError, match="mode='nowhere' is not accepted"):
        global_config.defaults.mode = "nowhere"
    with pytest.raises(ValueError, match="retry_jitter"):
        global_config.defaults.retry_jitter = 3.0
    assert global_config.thread.max_workers == 1  # the failed assignment changed nothing


def test_unknown_setting_and_section():
    with pytest.raises(ValueError, match="no_such_setting"):
        global_config.thread.no_such_setting = 1
    with pytest.raises(ValueError, match="unknown config section 'gpu'"):
        global_config.section("gpu")


def test_unknown_setting_names_it_and_lists_the_accepted_ones():
    with pytest.raises(ValueError) as info:
        global_config.thread.nope = 1
    message = str(info.value)
    assert "unknown setting 'nope' for global_config.thread" in message
    assert "max_workers" in message and "num_retries" in message and "stop_timeout" in message
    assert "pydantic" not in message
    with pytest.raises(ValueError, match=r"unknown setting 'retries' for global_config\.defaults"):
        global_config.defaults.retries = 3
    # a misspelt section is named too, when set and when read
    with pytest.raises(ValueError, match="unknown config section 'threads'; sections: defaults, sync"):
        global_config.threads = 1
    with pytest.raises(AttributeError, match="no section 'thred'; sections: defaults, sync"):
        global_config.thred.max_workers = 4


def test_default_mode_comes_from_global_config():
    global_config.defaults.mode = "thread"
    w = ThingWorker.init()
    try:
        assert w.mode == "thread"
        assert w.value().result(timeout=10) == 1
    finally:
        w.stop()


# ---- precedence: options() > decorator > per-mode > defaults ----

def test_precedence_defaults_then_per_mode_then_decorator_then_options():
    global_config.defaults.blocking = True
    assert resolve_options({"mode": ExecutionMode.THREAD}).blocking is True  # defaults
    global_config.thread.blocking = False
    assert resolve_options({"mode": ExecutionMode.THREAD}).blocking is False  # per-mode wins
    assert resolve_options({"mode": ExecutionMode.ASYNCIO}).blocking is True  # other modes: defaults

    global_config.thread.blocking = True
    # the decorator said blocking=False: it beats the per-mode value
    assert resolve_options(DecoratedThing.__concurry_options__).blocking is False
    w = DecoratedThing.init()
    try:
        assert w.value().result(timeout=10) == 2  # a future, so not blocking
    finally:
        w.stop()
    # options() beats the decorator
    w = DecoratedThing.options(blocking=True).init()
    try:
        assert w.value() == 2
    finally:
        w.stop()


def test_per_mode_value_used_by_workers_of_that_mode_only():
    global_config.thread.blocking = True
    t = ThingWorker.options(mode="thread").init()
    s = ThingWorker.options(mode="sync").init()
    try:
        assert t.value() == 1
        assert s.value().result() == 1
    finally:
        t.stop()
        s.stop()


def test_options_beat_global_values_for_every_kind():
    with temp_config(global_num_retries=3, thread_retry_wait=5.0, global_unwrap_futures=False):
        o = resolve_options({"mode": ExecutionMode.THREAD})
        assert (o.retry.num_retries, o.retry.retry_wait, o.unwrap_futures) == (3, 5.0, False)
        built = ThingWorker.options(mode="thread", num_retries=1, retry_wait=0.5, unwrap_futures=True)
        o = resolve_options(built._options)
        assert (o.retry.num_retries, o.retry.retry_wait, o.unwrap_futures) == (1, 0.5, True)


@pytest.mark.parametrize("how", ["attribute", "temp_config"])
def test_global_default_pool_size_does_not_break_single_worker_modes(how):
    with contextlib.ExitStack() as stack:
        if how == "attribute":
            global_config.defaults.max_workers = 4
        else:
            stack.enter_context(temp_config(global_max_workers=4))
        for m in ("sync", "asyncio"):
            w = ThingWorker.options(mode=m).init()  # the default pool size does not apply here
            try:
                assert w.value().result(timeout=10) == 1
                assert resolve_options({"mode": ExecutionMode(m)}).max_workers == 1
                assert global_config.effective(m)["max_workers"] == 1
            finally:
                w.stop()
        # ... but it does make pools for the modes that have them
        assert resolve_options({"mode": ExecutionMode.THREAD}).is_pool
        assert global_config.effective("thread")["max_workers"] == 4
        # and an explicit pool size for sync/asyncio is still refused at options() time
        with pytest.raises(ValueError, match="max_workers=4 is not accepted for mode='sync'"):
            ThingWorker.options(mode="sync", max_workers=4)


def test_global_default_mode_sync_with_default_pool_size_builds_one_worker():
    global_config.defaults.mode = "sync"
    global_config.defaults.max_workers = 3
    w = ThingWorker.init()
    try:
        assert w.mode == "sync" and w.value().result() == 1
    finally:
        w.stop()


@pytest.mark.parametrize("section", ["sync", "asyncio"])
@pytest.mark.parametrize("value", [0, 2, 8])
def test_single_worker_mode_section_refuses_a_pool_size(section, value):
    with pytest.raises(ValueError) as info:
        global_config.section(section).max_workers = value
    message = str(info.value)
    assert f"global_config.{section}.max_workers={value} is not accepted" in message
    assert "sync and asyncio run one worker" in message
    assert "max_workers" not in global_config.section(section).model_fields_set
    expected = rf"global_config\.{section}\.max_workers={value} is not accepted"
    with pytest.raises(ValueError, match=expected), temp_config(**{f"{section}_max_workers": value}):
        pass
    global_config.section(section).max_workers = 1  # 1 is fine
    with pytest.raises(ValueError, match="max_workers must be an int >= 0"):
        global_config.section(section).max_workers = -1  # range errors stay the same


def test_global_zero_max_workers_gives_one_worker_unless_on_demand():
    global_config.thread.max_workers = 0  # 0 means "no fixed cap" for on-demand pools only
    assert resolve_options({"mode": ExecutionMode.THREAD}).max_workers == 1
    o = resolve_options({"mode": ExecutionMode.THREAD, "on_demand": True})
    assert o.on_demand and o.max_workers == 0


# ---- temp_config ----

def test_temp_config_sets_and_restores():
    assert global_config.defaults.num_retries == 0
    with temp_config(global_num_retries=3, thread_max_workers=100) as cfg:
        assert cfg is global_config
        assert global_config.defaults.num_retries == 3
        assert global_config.thread.max_workers == 100
        assert global_config.effective("thread")["max_workers"] == 100
    assert global_config.defaults.num_retries == 0
    assert global_config.thread.max_workers == 1
    # a per-mode value that was unset is unset again: it follows defaults
    global_config.defaults.max_workers = 7
    assert global_config.effective("thread")["max_workers"] == 7


def test_temp_config_restores_on_error():
    with pytest.raises(KeyError), temp_config(global_blocking=True, asyncio_num_retries=2):
        assert global_config.defaults.blocking is True
        raise KeyError("inside")
    assert global_config.defaults.blocking is False
    assert global_config.effective("asyncio")["num_retries"] == 0


def test_temp_config_nested_restores_in_order():
    with temp_config(global_num_retries=1):
        with temp_config(global_num_retries=2):
            assert global_config.defaults.num_retries == 2
        assert global_config.defaults.num_retries == 1
    assert global_config.defaults.num_retries == 0


def test_temp_config_restores_an_explicitly_set_value():
    global_config.thread.num_retries = 5
    with temp_config(thread_num_retries=9):
        assert global_config.thread.num_retries == 9
    assert global_config.thread.num_retries == 5
    assert "num_retries" in global_config.thread.model_fields_set


def test_temp_config_unknown_key():
    with pytest.raises(ValueError) as info, temp_config(thread_speed=3):
        pass
    message = str(info.value)
    assert "unknown temp_config key 'thread_speed'" in message
    assert "global_num_retries=3" in message
    with pytest.raises(ValueError, match="unknown temp_config key 'max_workers'"), temp_config(max_workers=3):
        pass


def test_temp_config_invalid_value_changes_nothing():
    bad = {"global_blocking": True, "thread_num_retries": -1}
    with pytest.raises(ValueError, match="num_retries"), temp_config(**bad):
        pass
    assert global_config.defaults.blocking is False
    assert "blocking" not in global_config.defaults.model_fields_set


def test_workers_created_inside_temp_config_use_it():
    with temp_config(global_mode="thread", thread_blocking=True):
        w = ThingWorker.init()
    try:
        assert w.mode == "thread"
        assert w.value() == 1  # blocking, decided at init(), kept after the block
    finally:
        w.stop()
    w = ThingWorker.init()
    try:
        assert w.mode == "sync"
    finally:
        w.stop()


def test_stop_timeout_from_config():
    gate = threading.Event()
    with temp_config(thread_stop_timeout=0.1):
        w = ThingWorker.options(mode="thread").init(gate)
    running = w.wait_gate()
    while not running.running():
        threading.Event().wait(0.005)
    w.stop()  # no timeout given: the configured 0.1 s applies, so stop returns
    assert running.cancelled()
    gate.set()
