"""Retry policies and the attempt loop (issue 12, SPEC §11): pure unit tests, no workers.

The loop is driven directly with a recording ``sleep``, so the schedule is asserted exactly and
no test waits for a back-off.
"""

from __future__ import annotations

import asyncio
import pickle
import traceback

import pytest

from concurry import RetryAlgorithm, RetryConfig, RetryValidationError, temp_config, worker
from concurry.config import resolve_options
from concurry.options import RetryOptions
from concurry.retry import (
    MAX_DELAY,
    RetryPolicy,
    call_with_retries,
    call_with_retries_async,
    check_retry_methods,
    policy_for,
)

# ---- helpers ----


class Flaky:
    """Fails with ``exc_type(f"attempt {n}")`` for the first ``failures`` calls, then returns
    ``results`` in turn (or the attempt number)."""

    def __init__(self, failures: int = 0, exc_type: type[BaseException] = ValueError, results=None):
        self.failures, self.exc_type, self.results = failures, exc_type, results
        self.calls: list[tuple] = []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        n = len(self.calls)
        if n <= self.failures:
            raise self.exc_type(f"attempt {n}")
        return self.results[n - 1] if self.results is not None else n


class Sleeps:
    """A ``sleep`` that records the waits and does not wait; ``interrupt_at`` makes the n-th
    wait report an interruption."""

    def __init__(self, interrupt_at: int | None = None):
        self.waits: list[float] = []
        self.interrupt_at = interrupt_at

    def __call__(self, seconds: float) -> bool:
        self.waits.append(seconds)
        return len(self.waits) != self.interrupt_at


def policy(**options) -> RetryPolicy:
    """The policy a method gets from these retry options (validated as options() does)."""
    built = policy_for(RetryConfig(**{"retry_jitter": 0.0, **options}), "method")
    assert built is not None
    return built


def run(fn, p: RetryPolicy, *args, sleep=None, **kwargs):
    return call_with_retries(fn, args, kwargs, p, "method", sleep or Sleeps())


# module-level, so plain pickle carries them by reference
def accept_positive(result, **ctx) -> bool:
    return result > 0


def accept_even(result, **ctx) -> bool:
    return result % 2 == 0


def retry_if_transient(exception, **ctx) -> bool:
    return "transient" in str(exception)


# ---- attempts and the exception raised ----


@pytest.mark.parametrize("num_retries", [0, 1, 3])
def test_at_most_num_retries_plus_one_attempts_then_the_last_exception(num_retries):
    fn = Flaky(failures=100)
    sleep = Sleeps()
    p = policy(num_retries=num_retries, retry_until=accept_positive)  # (a policy even for 0)
    with pytest.raises(ValueError, match=f"^attempt {num_retries + 1}$"):
        run(fn, p, sleep=sleep)
    assert len(fn.calls) == num_retries + 1
    assert len(sleep.waits) == num_retries


def test_success_stops_the_attempts_and_returns_that_result():
    fn = Flaky(failures=2)
    sleep = Sleeps()
    assert run(fn, policy(num_retries=5), 1, 2, key="v", sleep=sleep) == 3
    assert fn.calls == [((1, 2), {"key": "v"})] * 3
    assert len(sleep.waits) == 2


def test_the_last_exception_keeps_its_traceback_from_the_users_frame():
    def fetch():
        raise ConnectionError("down")

    with pytest.raises(ConnectionError, match=r"^down$") as info:
        run(fetch, policy(num_retries=2))
    frames = traceback.extract_tb(info.value.__traceback__)
    assert frames[-1].name == "fetch"
    assert frames[-1].line == 'raise ConnectionError("down")'
    assert info.value.__context__ is None  # not chained to the earlier attempts' exceptions


def test_the_exception_raised_is_the_last_attempts_own_instance():
    seen = []

    def fn():
        seen.append(KeyError(len(seen)))
        raise seen[-1]

    with pytest.raises(KeyError) as info:
        run(fn, policy(num_retries=3))
    assert len(seen) == 4 and info.value is seen[-1]


# ---- retry_on ----


def test_an_exception_retry_on_does_not_accept_fails_at_once():
    fn = Flaky(failures=5, exc_type=KeyError)
    sleep = Sleeps()
    with pytest.raises(KeyError):
        run(fn, policy(num_retries=5, retry_on=ValueError), sleep=sleep)
    assert len(fn.calls) == 1 and sleep.waits == []


def test_retry_on_accepts_subclasses_and_lists_of_classes():
    assert run(Flaky(failures=2, exc_type=FileNotFoundError), policy(num_retries=2, retry_on=OSError)) == 3
    p = policy(num_retries=4, retry_on=[KeyError, TimeoutError])
    assert run(Flaky(failures=2, exc_type=TimeoutError), p) == 3
    fn = Flaky(failures=2, exc_type=ValueError)
    with pytest.raises(ValueError):
        run(fn, p)
    assert len(fn.calls) == 1


def test_retry_on_default_retries_every_exception():
    assert run(Flaky(failures=3, exc_type=ZeroDivisionError), policy(num_retries=3)) == 4


def test_retry_on_callable_gets_the_context_keywords():
    seen = []

    def decide(exception, attempt, elapsed_time, method_name, args, kwargs, **more):
        seen.append((str(exception), attempt, elapsed_time, method_name, args, kwargs, more))
        return attempt < 3

    fn = Flaky(failures=10)
    p = policy(num_retries=10, retry_on=decide)
    with pytest.raises(ValueError, match=r"^attempt 3$"):
        call_with_retries(fn, (7,), {"k": 1}, p, "fetch", Sleeps())
    assert [(s[0], s[1], s[3], s[4], s[5], s[6]) for s in seen] == [
        (f"attempt {n}", n, "fetch", (7,), {"k": 1}, {}) for n in (1, 2, 3)
    ]
    elapsed = [s[2] for s in seen]
    assert all(e >= 0 for e in elapsed) and elapsed == sorted(elapsed)


def test_retry_on_mixes_classes_and_callables_any_accepting_is_enough():
    p = policy(num_retries=3, retry_on=[KeyError, retry_if_transient])
    assert run(Flaky(failures=2, exc_type=KeyError), p) == 3

    class Transient(Exception):
        def __str__(self):
            return "transient glitch"

    assert run(Flaky(failures=2, exc_type=Transient), p) == 3
    fn = Flaky(failures=2, exc_type=RuntimeError)  # "attempt 1": neither entry accepts
    with pytest.raises(RuntimeError):
        run(fn, p)
    assert len(fn.calls) == 1


def test_an_error_in_a_retry_on_callable_is_raised_not_swallowed():
    def broken(exception, **ctx):
        raise LookupError("bug in the filter")

    with pytest.raises(LookupError, match="bug in the filter") as info:
        run(Flaky(failures=1), policy(num_retries=2, retry_on=broken))
    assert isinstance(info.value.__context__, ValueError)  # the attempt's own failure is kept


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
@pytest.mark.parametrize("retry_on", [BaseException, "callable"])
def test_non_exception_base_exceptions_are_never_retried(exc_type, retry_on):
    asked = []
    if retry_on == "callable":

        def retry_on(exception, **ctx):
            asked.append(exception)
            return True

    fn = Flaky(failures=5, exc_type=exc_type)
    sleep = Sleeps()
    p = policy(num_retries=5, retry_on=retry_on)
    with pytest.raises(exc_type):
        run(fn, p, sleep=sleep)
    assert len(fn.calls) == 1 and sleep.waits == [] and asked == []
    assert p.retries(exc_type(), 1, 0.0, "m", (), {}) is False


# ---- retry_until ----


def test_retry_until_all_validators_must_accept():
    fn = Flaky(results=[-2, 3, 4])  # -2: positive rejects; 3: even rejects; 4: both accept
    sleep = Sleeps()
    assert run(fn, policy(num_retries=5, retry_until=[accept_positive, accept_even]), sleep=sleep) == 4
    assert len(fn.calls) == 3 and len(sleep.waits) == 2


def test_rejected_by_names_every_rejecting_validator():
    p = policy(num_retries=1, retry_until=[accept_positive, accept_even])
    assert p.rejected_by(-3, 1, 0.0, "m", (), {}) == ["accept_positive", "accept_even"]
    assert p.rejected_by(3, 1, 0.0, "m", (), {}) == ["accept_even"]
    assert p.rejected_by(4, 1, 0.0, "m", (), {}) == []


def test_retry_until_gets_the_result_and_the_context():
    seen = []

    def check(result, **ctx):
        seen.append((result, ctx))
        return result == 2

    fn = Flaky(results=[1, 2])
    assert (
        call_with_retries(fn, ("a",), {"b": 2}, policy(num_retries=3, retry_until=check), "get", Sleeps())
        == 2
    )
    assert [r for r, _ in seen] == [1, 2]
    for attempt, (_, ctx) in enumerate(seen, 1):
        assert set(ctx) == {"attempt", "elapsed_time", "method_name", "args", "kwargs"}
        assert (ctx["attempt"], ctx["method_name"], ctx["args"], ctx["kwargs"]) == (
            attempt,
            "get",
            ("a",),
            {"b": 2},
        )


def test_an_error_in_a_retry_until_validator_is_raised_not_counted_as_a_rejection():
    def broken(result, **ctx):
        raise KeyError("bug in the validator")

    fn = Flaky(results=[1, 2, 3])
    with pytest.raises(KeyError, match="bug in the validator"):
        run(fn, policy(num_retries=2, retry_until=broken))
    assert len(fn.calls) == 1


def test_retry_validation_error_holds_every_result_in_order_and_the_rejecting_validators():
    fn = Flaky(results=[-1, 3, 5])
    p = policy(num_retries=2, retry_until=[accept_positive, accept_even])
    with pytest.raises(RetryValidationError) as info:
        call_with_retries(fn, (), {}, p, "compute", Sleeps())
    error = info.value
    assert error.results == [-1, 3, 5]
    assert error.validation_errors == ["accept_even"]  # the last result was positive
    assert error.attempts == 3 and error.method_name == "compute" and error.last_result == 5
    message = str(error)
    assert (
        "compute" in message and "accept_even" in message and "attempt 3 of 3" in message and "5" in message
    )


def test_results_of_attempts_that_raised_are_absent_and_order_is_kept():
    calls = []

    def fn():
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("glitch")
        return -len(calls)

    with pytest.raises(RetryValidationError) as info:
        run(fn, policy(num_retries=2, retry_until=accept_positive))
    assert info.value.results == [-1, -3] and info.value.attempts == 3


def test_if_the_last_attempt_raised_its_exception_is_raised_not_the_validation_error():
    calls = []

    def fn():
        calls.append(1)
        if len(calls) == 3:
            raise TimeoutError("slow")
        return -1

    with pytest.raises(TimeoutError, match="slow"):
        run(fn, policy(num_retries=2, retry_until=accept_positive))


def test_retry_until_without_retries_validates_the_one_attempt():
    p = policy_for(RetryOptions(num_retries=0, retry_until=accept_positive), "m")
    assert p is not None and p.attempts == 1
    with pytest.raises(RetryValidationError) as info:
        run(Flaky(results=[-5]), p)
    assert info.value.results == [-5]
    assert run(Flaky(results=[5]), p) == 5


def test_retry_validation_error_pickles_with_its_contents():
    error = RetryValidationError("m: rejected", [1, 2], ["accept_even"], 2, "m")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is RetryValidationError and str(copy) == "m: rejected"
    assert (copy.results, copy.validation_errors, copy.attempts, copy.method_name) == (
        [1, 2],
        ["accept_even"],
        2,
        "m",
    )


# ---- the schedule ----

SCHEDULES = {
    "exponential": [1, 2, 4, 8, 16, 32, 64],
    "linear": [1, 2, 3, 4, 5, 6, 7],
    "fixed": [1, 1, 1, 1, 1, 1, 1],
    "fibonacci": [1, 1, 2, 3, 5, 8, 13],
}


@pytest.mark.parametrize("algorithm", sorted(SCHEDULES))
def test_the_four_schedules_exactly_without_jitter(algorithm):
    p = policy(num_retries=7, retry_algorithm=algorithm, retry_wait=0.5)
    assert [p.delay(n) for n in range(1, 8)] == [0.5 * f for f in SCHEDULES[algorithm]]
    sleep = Sleeps()
    with pytest.raises(ValueError):
        run(Flaky(failures=100), p, sleep=sleep)
    assert sleep.waits == [0.5 * f for f in SCHEDULES[algorithm]]  # the loop waits exactly these


@pytest.mark.parametrize("jitter", [0.3, 1.0])
@pytest.mark.parametrize("algorithm", ["exponential", "fibonacci"])
def test_jitter_draws_within_bounds_and_spreads(algorithm, jitter):
    p = policy(num_retries=5, retry_algorithm=algorithm, retry_wait=2.0, retry_jitter=jitter)
    scheduled = 2.0 * SCHEDULES[algorithm][3]
    draws = [p.delay(4) for _ in range(2000)]
    low = (1 - jitter) * scheduled
    assert all(low <= d <= scheduled for d in draws)
    assert max(draws) - min(draws) > 0.8 * (scheduled - low)  # spread over the interval
    below = sum(d < (low + scheduled) / 2 for d in draws)
    assert 700 < below < 1300  # roughly uniform: about half below the middle


def test_zero_wait_and_zero_jitter():
    p = policy(num_retries=3, retry_wait=0.0, retry_jitter=1.0)
    assert [p.delay(n) for n in (1, 2, 3)] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("algorithm", sorted(SCHEDULES))
def test_a_long_schedule_saturates_instead_of_overflowing(algorithm):
    p = policy(num_retries=5000, retry_algorithm=algorithm, retry_wait=1.0)
    delay = p.delay(5000)
    assert 0 < delay <= MAX_DELAY
    p.wait = 0.0
    assert p.delay(5000) == 0.0


@pytest.mark.parametrize(
    "spelling, member",
    [
        ("LINEAR", RetryAlgorithm.LINEAR),
        ("Fibonacci", RetryAlgorithm.FIBONACCI),
        ("Exponential", RetryAlgorithm.EXPONENTIAL),
        (" fixed ", RetryAlgorithm.FIXED),
        ("EXP", RetryAlgorithm.EXPONENTIAL),
        ("Constant", RetryAlgorithm.FIXED),
        (RetryAlgorithm.LINEAR, RetryAlgorithm.LINEAR),
    ],
)
def test_algorithm_names_are_case_insensitive(spelling, member):
    p = policy(num_retries=3, retry_algorithm=spelling, retry_wait=1.0)
    assert p.algorithm is member
    assert [p.delay(n) for n in (1, 2, 3)] == [1.0 * f for f in SCHEDULES[member.value][:3]]
    options = resolve_options(Target.options(retry_algorithm=spelling, num_retries=1)._options)
    assert policy_for(options.retry, "fetch").algorithm is member


# ---- per-method settings ----


@worker
class Target:
    def fetch(self):
        return 1

    def store(self):
        return 2

    def other(self):
        return 3


def test_no_retries_and_no_validators_is_the_fast_path():
    assert policy_for(RetryOptions(), "fetch") is None
    assert policy_for(resolve_options(Target.options()._options).retry, "fetch") is None
    assert policy_for(RetryOptions(num_retries={"fetch": 2, "*": 0}), "store") is None


def test_per_method_dict_with_star_default():
    retry = RetryOptions(num_retries={"fetch": 5, "*": 1}, retry_wait={"store": 3.0, "*": 0.25})
    assert policy_for(retry, "fetch").attempts == 6 and policy_for(retry, "fetch").wait == 0.25
    assert policy_for(retry, "store").attempts == 2 and policy_for(retry, "store").wait == 3.0
    assert policy_for(retry, "other").attempts == 2


def test_per_method_dict_without_star_falls_back_to_the_global_default():
    with temp_config(global_num_retries=2, thread_retry_wait=0.75):
        retry = resolve_options(
            Target.options(mode="thread", num_retries={"fetch": 5}, retry_wait={"fetch": 9.0})._options
        ).retry
        assert policy_for(retry, "fetch").attempts == 6 and policy_for(retry, "fetch").wait == 9.0
        assert policy_for(retry, "store").attempts == 3 and policy_for(retry, "store").wait == 0.75
    retry = resolve_options(Target.options(num_retries={"fetch": 5})._options).retry
    assert policy_for(retry, "store") is None  # the library default: no retries


def test_per_method_dict_without_star_keeps_the_decorators_values_for_other_methods():
    @worker(num_retries=3, retry_on=KeyError)
    class Decorated:
        def fetch(self):
            pass

        def store(self):
            pass

        def other(self):
            pass

    built = Decorated.options(num_retries={"fetch": 0}, retry_on={"store": ValueError})
    retry = resolve_options(built._options).retry
    assert policy_for(retry, "fetch") is None
    assert policy_for(retry, "store").attempts == 4 and policy_for(retry, "store").retry_on == (ValueError,)
    assert policy_for(retry, "other").attempts == 4 and policy_for(retry, "other").retry_on == (KeyError,)
    retry = resolve_options(Decorated.options(num_retries={"*": 1})._options).retry  # a full dict replaces
    assert policy_for(retry, "store").attempts == 2


def test_a_plain_value_replaces_the_decorators_per_method_dict():
    @worker(num_retries={"fetch": 4})
    class Decorated:
        def fetch(self):
            pass

    retry = resolve_options(Decorated.options(num_retries=1)._options).retry
    assert policy_for(retry, "fetch").attempts == 2


def test_retry_config_bundles_the_options_and_keeps_what_it_was_given():
    config = RetryConfig(num_retries=2, retry_algorithm="LINEAR", retry_wait=0.5, retry_until=accept_positive)
    assert config.given == {
        "num_retries": 2,
        "retry_algorithm": RetryAlgorithm.LINEAR,
        "retry_wait": 0.5,
        "retry_until": accept_positive,
    }
    assert config.retry_jitter == 0.3 and config.retry_on is Exception  # not given: the built-in values
    assert config == RetryConfig(
        num_retries=2, retry_algorithm="linear", retry_wait=0.5, retry_until=accept_positive
    )
    assert "num_retries=2" in repr(config) and "retry_jitter" not in repr(config)
    assert pickle.loads(pickle.dumps(config)) == config


def test_retry_config_is_accepted_by_options_and_the_decorator():
    with temp_config(global_retry_jitter=0.0):
        built = Target.options(mode="thread", retry_config=RetryConfig(num_retries=2, retry_wait=0.5))
        retry = resolve_options(built._options).retry
        p = policy_for(retry, "fetch")
        assert (p.attempts, p.wait, p.jitter) == (3, 0.5, 0.0)  # jitter not given: global_config's

        @worker(retry_config=RetryConfig(num_retries=1))
        class Decorated:
            def fetch(self):
                pass

        layered = Decorated.options(retry_config=RetryConfig(retry_wait=2.0))  # only what it gives
        p = policy_for(resolve_options(layered._options).retry, "fetch")
        assert (p.attempts, p.wait) == (2, 2.0)


def test_retry_config_per_method_dict():
    config = {
        "fetch": RetryConfig(num_retries=5, retry_on=KeyError),
        "*": RetryConfig(num_retries=1, retry_wait=0.1),
    }
    retry = resolve_options(Target.options(retry_config=config)._options).retry
    fetch, store = policy_for(retry, "fetch"), policy_for(retry, "store")
    assert (fetch.attempts, fetch.retry_on, fetch.wait) == (6, (KeyError,), 0.1)
    assert (store.attempts, store.retry_on, store.wait) == (2, (Exception,), 0.1)


# ---- bad input: a clear error at options()/@worker(...)/RetryConfig(...) time ----

BAD = [
    ({"num_retries": -1}, ValueError, "num_retries must be an int >= 0"),
    ({"num_retries": {"fetch": -2}}, ValueError, "num_retries['fetch'] must be an int >= 0"),
    ({"num_retries": 2.5}, TypeError, "num_retries must be an int >= 0"),
    ({"retry_wait": -0.5}, ValueError, "retry_wait must be a finite number >= 0.0"),
    ({"retry_jitter": 1.5}, ValueError, "retry_jitter must be a finite number in [0.0, 1.0]"),
    ({"retry_jitter": -0.1}, ValueError, "retry_jitter must be a finite number in [0.0, 1.0]"),
    ({"retry_algorithm": "quadratic"}, ValueError, "retry_algorithm='quadratic' is not accepted; use one of"),
    ({"retry_on": "ValueError"}, TypeError, "retry_on must be an exception class or a callable"),
    ({"retry_on": [ValueError, 3]}, TypeError, "retry_on must be an exception class or a callable"),
    ({"retry_on": int}, TypeError, "retry_on must be an exception class or a callable"),
    (
        {"retry_on": lambda e: True},
        TypeError,
        "retry_on must be an exception class or a callable -> bool called with exception=...",
    ),
    ({"retry_until": 5}, TypeError, "retry_until must be a callable"),
    ({"retry_until": [accept_positive, "x"]}, TypeError, "retry_until must be a callable"),
    ({"retry_until": ValueError}, TypeError, "retry_until must be a callable"),  # a class, not a check
    (
        {"retry_until": lambda: True},
        TypeError,
        "retry_until must be a callable -> bool (or a list of them) called with the result first",
    ),
    (
        {"retry_until": {"fetch": lambda result, attempt: True}},
        TypeError,
        "retry_until['fetch'] must be a callable",
    ),
]


@pytest.mark.parametrize(("options", "kind", "fragment"), BAD)
def test_bad_retry_values_fail_early_naming_the_option(options, kind, fragment):
    with pytest.raises(kind) as info:
        Target.options(**options)
    assert type(info.value) is kind and fragment in str(info.value)
    with pytest.raises(kind) as info:
        worker(**options)
    assert fragment in str(info.value)
    with pytest.raises(kind) as info:
        RetryConfig(**options)
    assert fragment.split(" must")[0].split("=")[0] in str(info.value)


def test_a_signature_error_says_how_to_write_the_callable():
    with pytest.raises(TypeError) as info:
        Target.options(retry_on=lambda e: True)
    message = str(info.value)
    assert "attempt, elapsed_time, method_name, args, kwargs" in message
    assert "def check(exception, **ctx)" in message


@pytest.mark.parametrize(
    "options",
    [
        {"num_retries": {"fetch": 1, "fecth": 2}},
        {"retry_wait": {"nope": 1.0, "*": 2.0}},
        {"retry_until": {"_private": accept_even}},
    ],
)
def test_a_per_method_dict_naming_a_missing_method_is_refused(options):
    name = next(iter(options))
    with pytest.raises(ValueError) as info:
        Target.options(**options)
    message = str(info.value)
    assert message.startswith(name) and "Target does not have" in message
    assert "'fetch', 'other', 'store'" in message and "'*'" in message
    with pytest.raises(ValueError, match="does not have"):
        Target.options(mode="thread").options(**options)
    with pytest.raises(ValueError, match="does not have"):

        @worker(**options)
        class Target2:
            def fetch(self):
                pass


def test_task_per_method_dicts_are_checked_when_decorating():
    from concurry import Executor, task

    with pytest.raises(
        ValueError, match=r"num_retries names 'fetch', which TaskWorker does not have.*'submit'"
    ):

        @task(num_retries={"fetch": 2})
        def fetch():
            pass

    with pytest.raises(ValueError, match="does not have"):
        Executor(retry_wait={"fetch": 1.0})
    task(num_retries={"*": 2})(accept_even)  # "*" is always accepted


def test_check_retry_methods_accepts_known_names_and_retry_options():
    check_retry_methods(Target, {"num_retries": {"fetch": 1, "*": 0}, "blocking": True})
    check_retry_methods(Target, RetryOptions(retry_wait={"store": 1.0}))
    with pytest.raises(ValueError, match="'missing'"):
        check_retry_methods(Target, RetryOptions(retry_wait={"missing": 1.0}))


@pytest.mark.parametrize(
    ("value", "kind", "fragment"),
    [
        (3, TypeError, "retry_config must be a RetryConfig(...) or a dict"),
        ({"fetch": 3}, TypeError, "retry_config['fetch'] must be a RetryConfig"),
        (
            {"fetch": RetryConfig(num_retries={"*": 1})},
            TypeError,
            "retry_config['fetch'] has a per-method num_retries",
        ),
        ({"nope": RetryConfig(num_retries=1)}, ValueError, "num_retries names 'nope'"),
    ],
)
def test_bad_retry_config_values(value, kind, fragment):
    with pytest.raises(kind) as info:
        Target.options(retry_config=value)
    assert fragment in str(info.value)


def test_an_option_given_both_separately_and_in_retry_config_is_refused():
    with pytest.raises(ValueError, match="num_retries given both as an option and in retry_config"):
        Target.options(num_retries=1, retry_config=RetryConfig(num_retries=2))
    Target.options(retry_wait=1.0, retry_config=RetryConfig(num_retries=2))  # different options: fine


def test_retry_config_refuses_unknown_keywords():
    with pytest.raises(TypeError, match="retries"):
        RetryConfig(retries=3)


# ---- pickling ----


def test_policy_pickles_round_trip_with_plain_functions():
    p = policy_for(
        RetryConfig(
            num_retries=3,
            retry_on=[KeyError, retry_if_transient],
            retry_algorithm="fibonacci",
            retry_wait=0.2,
            retry_jitter=0.0,
            retry_until=[accept_positive, accept_even],
        ),
        "fetch",
    )
    copy = pickle.loads(pickle.dumps(p))
    assert copy == p and copy is not p
    assert [copy.delay(n) for n in (1, 2, 3)] == [p.delay(n) for n in (1, 2, 3)]
    assert copy.rejected_by(3, 1, 0.0, "fetch", (), {}) == ["accept_even"]
    assert copy.retries(KeyError(), 1, 0.0, "fetch", (), {}) and not copy.retries(
        OSError("x"), 1, 0.0, "fetch", (), {}
    )
    assert run(Flaky(results=[-1, 4]), copy) == 4


def test_policy_with_lambdas_travels_by_cloudpickle():
    import cloudpickle

    p = policy(
        num_retries=2, retry_on=lambda exception, **ctx: True, retry_until=lambda result, **ctx: result > 1
    )
    copy = pickle.loads(cloudpickle.dumps(p))
    assert copy.attempts == 3 and copy.rejected_by(1, 1, 0.0, "m", (), {}) == ["<lambda>"]
    assert run(Flaky(failures=1), copy) == 2


# ---- interrupted waits and the limits hook ----


def test_an_interrupted_wait_raises_the_last_failure_at_once():
    fn = Flaky(failures=10)
    sleep = Sleeps(interrupt_at=2)
    with pytest.raises(ValueError, match=r"^attempt 2$"):
        run(fn, policy(num_retries=10), sleep=sleep)
    assert len(fn.calls) == 2 and len(sleep.waits) == 2


def test_an_interrupted_wait_after_a_rejected_result_raises_the_validation_error():
    fn = Flaky(results=[-1, -2, -3])
    with pytest.raises(RetryValidationError) as info:
        run(fn, policy(num_retries=5, retry_until=accept_positive), sleep=Sleeps(interrupt_at=1))
    assert info.value.results == [-1] and info.value.attempts == 1 and len(fn.calls) == 1


def test_a_sleep_returning_none_is_a_completed_wait():
    import time

    p = policy(num_retries=2, retry_wait=0.0)
    assert call_with_retries(Flaky(failures=2), (), {}, p, "m", time.sleep) == 3


def test_the_hook_runs_after_each_failed_attempt_before_its_wait():
    events = []

    def sleep(seconds):
        events.append("wait")
        return True

    fn = Flaky(failures=2)
    result = call_with_retries(
        fn, (), {}, policy(num_retries=3), "m", sleep, on_attempt_failed=lambda n: events.append(n)
    )
    assert result == 3 and events == [1, "wait", 2, "wait"]


# ---- the async variant ----


class AsyncSleeps(Sleeps):
    async def __call__(self, seconds: float) -> bool:  # type: ignore[override]
        await asyncio.sleep(0)
        return Sleeps.__call__(self, seconds)


def _async(fn):
    async def method(*args, **kwargs):
        await asyncio.sleep(0)
        return fn(*args, **kwargs)

    return method


def test_async_retries_until_success_with_the_schedule():
    fn = Flaky(failures=2)
    sleep = AsyncSleeps()
    p = policy(num_retries=4, retry_algorithm="linear", retry_wait=0.5)
    assert asyncio.run(call_with_retries_async(_async(fn), (1,), {"k": 2}, p, "m", sleep)) == 3
    assert fn.calls == [((1,), {"k": 2})] * 3 and sleep.waits == [0.5, 1.0]


def test_async_attempts_run_out_raising_the_last_exception():
    fn = Flaky(failures=10, exc_type=KeyError)
    with pytest.raises(KeyError, match="attempt 3"):
        asyncio.run(call_with_retries_async(_async(fn), (), {}, policy(num_retries=2), "m", AsyncSleeps()))
    fn = Flaky(failures=10, exc_type=KeyError)
    with pytest.raises(KeyError, match="attempt 1"):
        asyncio.run(
            call_with_retries_async(
                _async(fn), (), {}, policy(num_retries=2, retry_on=OSError), "m", AsyncSleeps()
            )
        )


def test_async_validation_and_interruption():
    fn = Flaky(results=[-1, -2, -3])
    p = policy(num_retries=2, retry_until=accept_positive)
    with pytest.raises(RetryValidationError) as info:
        asyncio.run(call_with_retries_async(_async(fn), (), {}, p, "m", AsyncSleeps()))
    assert info.value.results == [-1, -2, -3]
    fn = Flaky(failures=10)
    with pytest.raises(ValueError, match=r"^attempt 1$"):
        asyncio.run(
            call_with_retries_async(
                _async(fn), (), {}, policy(num_retries=5), "m", AsyncSleeps(interrupt_at=1)
            )
        )
    assert len(fn.calls) == 1


def test_async_never_retries_cancellation():
    calls = []

    async def fn():
        calls.append(1)
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(
            call_with_retries_async(
                fn, (), {}, policy(num_retries=3, retry_on=BaseException), "m", AsyncSleeps()
            )
        )
    assert calls == [1]


def test_async_with_asyncio_sleep_itself():
    p = policy(num_retries=2, retry_wait=0.0)
    assert asyncio.run(call_with_retries_async(_async(Flaky(failures=2)), (), {}, p, "m", asyncio.sleep)) == 3
