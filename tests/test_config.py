"""``global_config`` and ``temp_config`` (SPEC §9) with the precedence of SPEC §2.2."""

from __future__ import annotations

import contextlib
import re
import threading

import pytest

from concurry import ExecutionMode, RetryAlgorithm, global_config, temp_config, worker
from concurry.config import resolve_options


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
    assert set(dump) == {"mode", *global_config.effective("thread")}  # only defaults has a mode


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


# ---- reading a setting gives what a worker of that section's mode gets ----

MODES = [m.value for m in ExecutionMode]
RESOLVED = {  # setting name -> how to read it from a resolved WorkerOptions
    "max_queued_tasks": lambda o: o.max_queued_tasks,
    "load_balancing": lambda o: o.load_balancing,
    "blocking": lambda o: o.blocking,
    "unwrap_futures": lambda o: o.unwrap_futures,
    "num_retries": lambda o: o.retry.num_retries,
    "retry_wait": lambda o: o.retry.retry_wait,
    "mp_context": lambda o: o.mp_context,
    "stop_timeout": lambda o: o.stop_timeout,
    "max_workers": lambda o: o.max_workers,
}


def test_per_mode_setting_reads_the_defaults_value_it_falls_back_to():
    global_config.defaults.max_workers = 4
    assert global_config.thread.max_workers == 4
    assert global_config.process.max_workers == 4
    assert global_config.sync.max_workers == 1 and global_config.asyncio.max_workers == 1  # one worker
    global_config.thread.max_workers = 2
    assert global_config.thread.max_workers == 2
    assert global_config.process.max_workers == 4 and global_config.defaults.max_workers == 4


def test_mode_built_in_values_read_back_and_yield_to_a_set_default():
    assert global_config.process.max_queued_tasks == 100 and global_config.ray.max_queued_tasks == 3
    assert global_config.thread.max_queued_tasks is None
    global_config.defaults.max_queued_tasks = 5  # set by the user: beats the built-in per-mode value
    assert global_config.process.max_queued_tasks == 5
    assert resolve_options({"mode": ExecutionMode.PROCESS}).max_queued_tasks == 5
    global_config.process.max_queued_tasks = None  # None is a value here: no cap
    assert global_config.process.max_queued_tasks is None
    assert resolve_options({"mode": ExecutionMode.PROCESS}).max_queued_tasks is None


@pytest.mark.parametrize("mode", MODES)
def test_every_setting_read_back_equals_what_init_resolves(mode):
    global_config.defaults.max_workers = 3
    global_config.defaults.num_retries = 2
    global_config.defaults.mp_context = "forkserver"
    global_config.thread.retry_wait = 0.25
    global_config.process.blocking = True
    global_config.ray.stop_timeout = 4.0
    global_config.asyncio.unwrap_futures = False
    resolved = resolve_options({"mode": ExecutionMode(mode)})
    section = global_config.section(mode)
    for name, read in RESOLVED.items():
        assert getattr(section, name) == read(resolved), name
        assert global_config.effective(mode)[name] == read(resolved), name


def test_del_makes_a_setting_not_set_again():
    global_config.defaults.max_workers = 4
    global_config.thread.max_workers = 2
    del global_config.thread.max_workers
    assert global_config.thread.max_workers == 4  # falls back again
    assert "max_workers" not in global_config.thread.model_fields_set
    del global_config.thread.max_workers  # not set: nothing to do
    del global_config.defaults.max_workers
    assert global_config.defaults.max_workers == 1 and global_config.thread.max_workers == 1
    global_config.thread.max_queued_tasks = None
    assert "max_queued_tasks" in global_config.thread.model_fields_set  # None is a value, not "unset"
    with pytest.raises(AttributeError, match=r"unknown setting 'max_wrkers' for global_config\.thread"):
        del global_config.thread.max_wrkers


# ---- dumps ----

def test_model_dump_gives_effective_values_and_explain_says_where_from():
    global_config.defaults.num_retries = 4
    global_config.thread.blocking = True
    dump = global_config.thread.model_dump()
    assert dump["num_retries"] == 4 and dump["blocking"] is True and dump["max_workers"] == 1
    assert "mode" not in dump
    assert global_config.thread.model_dump(exclude_unset=True) == {"blocking": True}
    assert global_config.model_dump(exclude_unset=True)["defaults"] == {"num_retries": 4}
    assert global_config.model_dump()["process"]["max_queued_tasks"] == 100
    rows = global_config.thread.explain()
    assert set(rows) == set(dump)
    assert rows["blocking"] == (True, True, "global_config.thread")
    assert rows["num_retries"] == (4, False, "global_config.defaults")
    assert rows["stop_timeout"] == (30.0, False, "built-in")
    assert global_config.process.explain()["max_queued_tasks"] == (100, False, "built-in")
    global_config.defaults.max_workers = 5
    assert global_config.sync.explain()["max_workers"].value == 1
    assert global_config.sync.explain()["max_workers"].source.startswith("built-in")
    assert "blocking=True" in repr(global_config.thread)


# ---- a section is a mode: it has no mode setting ----

@pytest.mark.parametrize("section", MODES)
def test_mode_sections_have_no_mode_setting(section):
    with pytest.raises(ValueError) as info:
        global_config.section(section).mode = "thread"
    assert f"global_config.{section} has no 'mode' setting" in str(info.value)
    assert "global_config.defaults.mode" in str(info.value)
    with pytest.raises(AttributeError, match=r"global_config\.defaults\.mode"):
        global_config.section(section).mode  # noqa: B018
    key = f"{section}_mode"
    expected = f"unknown temp_config key '{key}'.*global_mode"
    with pytest.raises(ValueError, match=expected), temp_config(**{key: "thread"}):
        pass
    global_config.defaults.mode = "thread"  # the default mode lives in defaults
    assert global_config.default_mode() is ExecutionMode.THREAD


def test_sections_cannot_be_replaced_and_survive_reset():
    thread = global_config.thread
    with pytest.raises(TypeError, match=r"global_config\.thread is a section"):
        global_config.thread = {"max_workers": 3}
    thread.max_workers = 3
    global_config.reset()
    assert global_config.thread is thread and thread.max_workers == 1


# ---- every invalid value: ValueError/TypeError naming the setting, never pydantic's error ----

BAD_VALUES = [
    ("thread", "max_workers", -3, ValueError, "must be an int >= 0"),
    ("thread", "max_workers", "8", TypeError, "must be an int >= 0"),
    ("defaults", "blocking", "sometimes", TypeError, "must be True or False"),
    ("defaults", "mode", "nowhere", ValueError, "is not accepted; use one of 'sync'"),
    ("process", "mp_context", "vfork", ValueError, "is not accepted; use one of 'spawn'"),
    ("process", "max_queued_tasks", 0, ValueError, "must be an int >= 1"),
    ("defaults", "retry_jitter", 3.0, ValueError, r"must be a finite number in \[0.0, 1.0\]"),
    ("defaults", "retry_wait", float("inf"), ValueError, "must be a finite number >= 0.0"),
    ("ray", "stop_timeout", "1", TypeError, "must be a finite number >= 0.0"),
    ("ray", "polling_interval", {"a": 1.0}, TypeError, "must be a finite number >= 0.0"),
    ("ray", "polling_algorithm", "sometimes", ValueError, "is not accepted; use one of"),
    ("thread", "load_balancing", "best", ValueError, "is not accepted; use one of 'round_robin'"),
    ("thread", "retry_on", 3, TypeError, "must be an exception class or a callable"),
    ("asyncio", "max_workers", 2, ValueError, "sync and asyncio run one worker"),
]


@pytest.mark.parametrize(("section", "name", "value", "kind", "accepted"), BAD_VALUES)
def test_invalid_value_raises_a_plain_error_naming_the_setting(section, name, value, kind, accepted):
    target = global_config.section(section)
    before = target.model_dump()[name]
    with pytest.raises((ValueError, TypeError)) as info:
        setattr(target, name, value)
    assert type(info.value) is kind  # not a subclass such as pydantic's ValidationError
    message = str(info.value)
    assert message.startswith(f"global_config.{section}.{name}")
    assert re.search(accepted, message), message
    assert "pydantic" not in message
    assert target.model_dump()[name] == before  # nothing changed
    key = f"{'global' if section == 'defaults' else section}_{name}"
    with pytest.raises(kind, match=accepted), temp_config(**{key: value}):
        pass


SHARED_CANDIDATES = {
    "max_workers": [1, 2, 0, -1, "2", True, 2.0],
    "max_queued_tasks": [None, 1, 0, "3", 5],
    "load_balancing": ["rr", "LEAST_ACTIVE", "best", 1],
    "blocking": [True, False, 1, "yes", None],
    "unwrap_futures": [True, 0],
    "num_retries": [0, 3, -1, {"*": 2}, {"*": -2}, 1.5],
    "retry_on": [ValueError, (KeyError, OSError), "x", lambda exception, **ctx: True],
    "retry_algorithm": ["linear", "exp", "zigzag"],
    "retry_wait": [0, 2.5, -1, float("nan"), {"value": 1.0}],  # (options() checks the method exists)
    "retry_jitter": [0, 1, 1.5],
    "retry_until": [None, callable, 3],
    "mp_context": ["spawn", "FORK", "vfork", 1],
    "mode": ["threads", "proc", "gpu", None],
}


@pytest.mark.parametrize("name", sorted(SHARED_CANDIDATES))
def test_config_and_options_accept_the_same_values(name):
    mode = "process" if name == "mp_context" else "thread"  # (mp_context means nothing elsewhere)
    section = global_config.defaults if name == "mode" else getattr(global_config, mode)

    def accepted(call, *args, **kwargs):
        try:
            call(*args, **kwargs)
        except (ValueError, TypeError):
            return False
        return True

    for value in SHARED_CANDIDATES[name]:
        extra = {} if name == "mode" else {"mode": mode}
        if name == "max_workers":  # 0 alone is a combination error in options(): it needs on_demand
            extra["on_demand"] = True
        in_options = accepted(ThingWorker.options, **extra, **{name: value})
        in_config = accepted(setattr, section, name, value)
        assert in_options == in_config, (name, value)


# ---- temp_config restores exactly, "not set" included ----

def test_temp_config_restores_not_set_and_set_values_exactly():
    global_config.defaults.num_retries = 2
    global_config.process.blocking = True
    before = {name: global_config.section(name).explain() for name in global_config.SECTIONS}
    with temp_config(thread_num_retries=5, process_blocking=False, global_num_retries=7, ray_max_workers=2):
        assert global_config.thread.num_retries == 5 and global_config.asyncio.num_retries == 7
        assert global_config.process.blocking is False and global_config.ray.max_workers == 2
        global_config.sync.blocking = True  # set by hand inside the block: not temp_config's to undo
    assert global_config.sync.explain()["blocking"] == (True, True, "global_config.sync")
    del global_config.sync.blocking
    assert {name: global_config.section(name).explain() for name in global_config.SECTIONS} == before
    assert global_config.thread.explain()["num_retries"] == (2, False, "global_config.defaults")


@pytest.mark.parametrize("section", ["thread", "sync", "asyncio"])
def test_mp_context_is_refused_outside_process_workers(section):
    refused = rf"global_config\.{section}\.mp_context='spawn'.*only applies to process"
    with pytest.raises(ValueError, match=refused):
        getattr(global_config, section).mp_context = "spawn"
    global_config.process.mp_context = "spawn"  # where it means something
    del global_config.process.mp_context
