"""Messages users read: ``python -m concurry --help``, option errors, builder mistakes.

Asserted by content: each message names what is wrong and what to do, in plain words, and
never points at a specification the user does not have.
"""

from __future__ import annotations

import collections
import subprocess
import sys

import pytest

from concurry import gather, task, worker


@worker
class Counter:
    def add(self, x: int) -> int:
        return x


@worker(mode="thread")
class ThreadCounter:
    def add(self, x: int) -> int:
        return x


# ---- python -m concurry ----


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_tour_help_prints_usage_without_running_the_tour(flag):
    proc = subprocess.run(
        [sys.executable, "-m", "concurry", flag], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m concurry")
    text = " ".join(proc.stdout.split())  # argparse wraps to the terminal's width
    assert "tour" in text and "every available mode" in text
    assert "Tour finished" not in proc.stdout


def test_tour_refuses_unknown_arguments_clearly():
    proc = subprocess.run(
        [sys.executable, "-m", "concurry", "--fast"], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert "unrecognized arguments: --fast" in proc.stderr
    assert "usage: python -m concurry" in proc.stderr
    assert "Tour finished" not in proc.stdout


# ---- mp_context outside process mode ----


@pytest.mark.parametrize("mode", ["sync", "thread", "asyncio"])
def test_mp_context_is_refused_outside_process_mode(mode):
    with pytest.raises(ValueError) as info:
        Counter.options(mode=mode, mp_context="fork")
    message = str(info.value)
    assert "mp_context='fork' only applies to mode='process'" in message
    assert f"mode={mode!r}" in message


def test_mp_context_over_a_thread_class_default_is_refused():
    with pytest.raises(ValueError, match="only applies to mode='process'"):
        ThreadCounter.options(mp_context="spawn")
    with pytest.raises(ValueError, match="only applies to mode='process'"):
        worker(mode="thread", mp_context="spawn")
    with pytest.raises(ValueError, match="only applies to mode='process'"):
        task(mode="asyncio", mp_context="spawn")


def test_switching_a_process_worker_to_threads_keeps_working():
    @worker(mode="process", mp_context="forkserver")
    class Proc:
        def ping(self) -> str:
            return "pong"

    with Proc.options(mode="thread").init() as p:  # e.g. to debug it: mp_context no longer applies
        assert p.ping().result(timeout=30) == "pong"


# ---- a builder is not a worker ----


def test_calling_a_method_on_a_builder_says_to_call_init_first():
    builder = Counter.options(mode="thread")
    with pytest.raises(AttributeError) as info:
        builder.add(1)
    message = str(info.value)
    assert "builder, not a worker" in message and "call .init(...) on it first" in message
    assert "Counter.options(...).init(...).add(...)" in message


def test_other_missing_builder_attributes_are_plain_attribute_errors():
    builder = Counter.options(mode="thread")
    with pytest.raises(AttributeError, match="has no attribute 'colour'") as info:
        _ = builder.colour
    assert ".init" not in str(info.value)
    assert not hasattr(builder, "_private")


# ---- unknown options ----


def unknown(**options) -> str:
    with pytest.raises(ValueError) as info:
        Counter.options(**options)
    return str(info.value)


def test_unknown_option_lists_the_options_of_the_mode_at_hand():
    message = unknown(mode="thread", colour="red")
    assert "unknown worker option 'colour'" in message
    assert "Accepted options for mode='thread':" in message and "max_workers" in message
    assert "num_cpus" not in message and "placement_group" not in message, "Ray options are for ray"
    assert "mp_context" not in message, "mp_context is for process workers"


def test_unknown_option_for_a_process_worker_lists_mp_context():
    message = unknown(mode="process", colour="red")
    assert "Accepted options for mode='process':" in message and "mp_context" in message
    assert "num_cpus" not in message


def test_unknown_option_uses_the_class_default_mode():
    with pytest.raises(ValueError) as info:
        ThreadCounter.options(colour="red")
    assert "Accepted options for mode='thread':" in str(info.value)


def test_unknown_option_for_ray_lists_the_ray_actor_options():
    message = unknown(mode="ray", num_cpu=2)
    assert "Did you mean 'num_cpus'?" in message
    assert "Accepted options for mode='ray':" in message
    assert "the Ray actor options" in message and "placement_group" in message


def test_unknown_option_without_a_mode_says_where_ray_options_apply():
    message = unknown(colour="red")
    assert "Accepted options: mode, max_workers" in message
    assert "Ray actor options" in message and "apply to mode='ray'" in message
    assert "placement_group_capture_child_tasks" not in message, "not every Ray actor option"


@pytest.mark.parametrize(
    "typo, meant",
    [
        ("max_worker", "max_workers"),
        ("load_balacing", "load_balancing"),
        ("num_retry", "num_retries"),
        ("unwrap_future", "unwrap_futures"),
        ("blockng", "blocking"),
    ],
)
def test_a_typo_gets_the_closest_option_suggested(typo, meant):
    assert f"Did you mean {meant!r}?" in unknown(mode="thread", **{typo: 1})
    with pytest.raises(ValueError, match=f"Did you mean {meant!r}"):
        task(**{typo: 1})


def test_a_ray_option_typo_outside_ray_says_it_is_a_ray_option():
    message = unknown(mode="thread", num_gpu=1)
    assert "Did you mean 'num_gpus' (a Ray actor option, for mode='ray')?" in message


# ---- grammar, and no specification references ----


def test_enum_errors_use_the_right_article():
    with pytest.raises(ValueError, match="or an ExecutionMode member"):
        Counter.options(mode="threadz")
    with pytest.raises(ValueError, match="or a LoadBalancingAlgorithm member"):
        Counter.options(load_balancing="fastest")


def test_collection_errors_use_the_right_article():
    with pytest.raises(TypeError, match="argument 2 is an OrderedDict"):
        gather(1, collections.OrderedDict())


def user_facing_errors() -> list[str]:
    """Messages of the errors a user is most likely to meet."""
    attempts = [
        lambda: Counter.options(mode="ray", num_cpu=2),
        lambda: Counter.options(mode="sync", max_workers=2),
        lambda: Counter.options(mode="asyncio", on_demand=True),
        lambda: Counter.options(max_workers=0, on_demand=False),
        lambda: Counter.options(mode="thread", bogus=1),
        lambda: Counter.options(mode="nope"),
        lambda: Counter.options(mode="thread", mp_context="fork"),
        lambda: Counter.options(mode="thread").add(1),
        lambda: Counter.options(mode="sync").init()._hidden,
        lambda: Counter.options(mode="sync").init().missing,
        lambda: worker(lambda: None),
    ]
    messages = []
    for attempt in attempts:
        try:
            attempt()
        except Exception as exc:  # collecting every kind of message
            messages.append(f"{type(exc).__name__}: {exc}")
        else:
            raise AssertionError("expected an error")
    return messages


def test_no_message_points_at_the_specification():
    for message in user_facing_errors():
        assert "SPEC" not in message and "§" not in message, message
