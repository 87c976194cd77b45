"""Retries: what a worker's retry options mean for one method, and the attempt loop.

``policy_for`` resolves a worker's ``RetryOptions`` for one method into a ``RetryPolicy``, once
per method (not per call), or into ``None`` when the method needs no attempt loop: a worker
without retries then calls its methods exactly as before. ``call_with_retries`` and
``call_with_retries_async`` run one call under a policy, next to the instance; the caller
supplies the wait (``sleep``), so a stopping worker can cut a back-off short.
"""

from __future__ import annotations

import random
import reprlib
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .constants import RetryAlgorithm
from .errors import RetryValidationError
from .introspection import public_methods
from .options import RETRY_OPTIONS, RetryConfig, RetryOptions

# The longest wait any wait API accepts (Event.wait, Condition.wait, ...): a long exponential
# schedule saturates here rather than overflowing.
MAX_DELAY = threading.TIMEOUT_MAX

_BUILT_IN = {name: getattr(RetryOptions, name) for name in RETRY_OPTIONS}


def _factor(algorithm: RetryAlgorithm, attempt: int) -> float:
    """The multiple of ``retry_wait`` waited after failed attempt ``attempt`` (1-based)."""
    if algorithm is RetryAlgorithm.EXPONENTIAL:
        try:
            return 2.0 ** (attempt - 1)
        except OverflowError:
            return float("inf")
    if algorithm is RetryAlgorithm.LINEAR:
        return float(attempt)
    if algorithm is RetryAlgorithm.FIXED:
        return 1.0
    previous, current = 0.0, 1.0  # fibonacci: 1, 1, 2, 3, 5, ... (floats saturate at inf)
    for _ in range(attempt - 1):
        previous, current = current, previous + current
    return current


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or repr(fn)


class RetryPolicy:
    """The retry options resolved for one method: how many attempts, what to retry, how long to
    wait, which results to accept. Plain attributes, so it pickles (the callables the user gave
    travel with the library's class transport when plain pickle cannot carry them)."""

    def __init__(
        self,
        num_retries: int = 0,
        retry_on: Any = Exception,
        retry_algorithm: RetryAlgorithm | str = RetryAlgorithm.EXPONENTIAL,
        retry_wait: float = 1.0,
        retry_jitter: float = 0.3,
        retry_until: Any = None,
    ) -> None:
        # Values come validated (options(), RetryConfig, global_config); only normalised here.
        self.attempts: int = num_retries + 1
        self.algorithm = RetryAlgorithm.parse(retry_algorithm, "retry_algorithm")
        self.wait = float(retry_wait)
        self.jitter = float(retry_jitter)
        self.retry_on: tuple[Any, ...] = (
            tuple(retry_on) if isinstance(retry_on, (list, tuple)) else (retry_on,)
        )
        if retry_until is None:
            self.validators: tuple[Callable[..., Any], ...] = ()
        elif isinstance(retry_until, (list, tuple)):
            self.validators = tuple(retry_until)
        else:
            self.validators = (retry_until,)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based), jitter applied: drawn
        uniformly from ``[(1 - retry_jitter) * d, d]`` where ``d`` is the scheduled wait."""
        if self.wait == 0.0:
            return 0.0
        scheduled = min(self.wait * _factor(self.algorithm, attempt), MAX_DELAY)
        if self.jitter:
            # the module's generator: reseeded in every forked child, so pool members spread apart
            return random.uniform((1.0 - self.jitter) * scheduled, scheduled)
        return scheduled

    def retries(
        self, exc: BaseException, attempt: int, elapsed: float, method_name: str, args: tuple, kwargs: dict
    ) -> bool:
        """Whether ``retry_on`` accepts ``exc`` for another attempt: any entry accepting is
        enough. ``KeyboardInterrupt``, ``SystemExit`` and other non-``Exception``s never are."""
        if not isinstance(exc, Exception):
            return False
        for entry in self.retry_on:
            if isinstance(entry, type):
                if isinstance(exc, entry):
                    return True
            elif entry(
                exception=exc,
                attempt=attempt,
                elapsed_time=elapsed,
                method_name=method_name,
                args=args,
                kwargs=kwargs,
            ):
                return True
        return False

    def rejected_by(
        self, result: Any, attempt: int, elapsed: float, method_name: str, args: tuple, kwargs: dict
    ) -> list[str]:
        """The names of the ``retry_until`` validators that reject ``result``; ``[]``: accepted.
        Every validator is asked, so all that reject are named."""
        return [
            _name(check)
            for check in self.validators
            if not check(
                result,
                attempt=attempt,
                elapsed_time=elapsed,
                method_name=method_name,
                args=args,
                kwargs=kwargs,
            )
        ]

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(attempts={self.attempts}, algorithm={self.algorithm.value!r}, wait={self.wait}, "
            f"jitter={self.jitter}, retry_on={self.retry_on!r}, validators={self.validators!r})"
        )


def _for_method(value: Any, name: str, method_name: str) -> Any:
    if isinstance(value, Mapping):
        if method_name in value:
            return value[method_name]
        return value.get("*", _BUILT_IN[name])
    return value


def policy_for(retry: RetryOptions | RetryConfig, method_name: str) -> RetryPolicy | None:
    """The policy for ``method_name``, or ``None`` when it needs no attempt loop
    (``num_retries == 0`` and no ``retry_until``): the caller then calls the method directly.

    Per-method dicts give the method's own entry, else ``"*"``, else the built-in value.
    Resolve once per method and keep the result: nothing here belongs on the per-call path."""
    if isinstance(retry, RetryConfig):
        retry = RetryOptions(**retry.given)
    values = {name: _for_method(getattr(retry, name), name, method_name) for name in RETRY_OPTIONS}
    if values["num_retries"] == 0 and values["retry_until"] in (None, (), []):
        return None
    return RetryPolicy(**values)


def check_retry_methods(cls: type, retry_options: Mapping[str, Any] | RetryOptions) -> None:
    """Refuse per-method retry dicts naming a method ``cls`` does not have (a typo would
    otherwise silently leave that method without retries). ``retry_options`` is a worker's
    validated options (a dict; other keys are ignored) or a ``RetryOptions``."""
    if isinstance(retry_options, RetryOptions):
        retry_options = vars(retry_options)
    methods: list[str] | None = None
    for name in RETRY_OPTIONS:
        value = retry_options.get(name)
        if not isinstance(value, Mapping):
            continue
        if methods is None:
            methods = public_methods(cls)
        unknown = [key for key in value if key != "*" and key not in methods]
        if unknown:
            raise ValueError(
                f"{name} names {', '.join(map(repr, unknown))}, which {cls.__name__} does not have as a "
                f"public method; accepted keys: {', '.join(map(repr, methods)) or '(no public methods)'} "
                "and '*' for every other method"
            )


# ---- the attempt loop ----
#
# ``fn`` is the user's bound method; ``sleep(seconds)`` waits between attempts and returns False
# when the wait was cut short (the worker is stopping): the last failure is then raised at once.
# ``sleep`` returning None (``time.sleep``, ``asyncio.sleep``) means the wait ran out normally.


class _Attempts:
    """What the two attempt loops share: after each attempt, whether to try again, and what to
    raise when they stop. The loops themselves only call and wait (the one plain, one awaiting),
    and make it at the first failure: a call that succeeds at once pays for none of it."""

    __slots__ = (
        "args",
        "attempt",
        "failure",
        "kwargs",
        "method_name",
        "policy",
        "rejected",
        "results",
        "start",
    )

    def __init__(self, policy: RetryPolicy, method_name: str, args: tuple, kwargs: dict, start: float):
        self.policy, self.method_name, self.args, self.kwargs = policy, method_name, args, kwargs
        self.start = start
        self.attempt = 1
        self.results: list[Any] = []
        self.rejected: list[str] = []
        self.failure: BaseException | None = None

    def retry_after(self, exc: Exception) -> bool:
        """The attempt raised ``exc``: try again? (If not, the caller re-raises it as it is.)"""
        policy = self.policy
        if self.attempt >= policy.attempts or not policy.retries(
            exc, self.attempt, time.monotonic() - self.start, self.method_name, self.args, self.kwargs
        ):
            return False
        self.failure = exc
        return True

    def accepts(self, result: Any) -> bool:
        """The attempt returned ``result`` (and the policy has validators): is it the answer?
        Raises once validation has used up every attempt."""
        policy = self.policy
        self.rejected = policy.rejected_by(
            result, self.attempt, time.monotonic() - self.start, self.method_name, self.args, self.kwargs
        )
        if not self.rejected:
            return True
        self.results.append(result)
        self.failure = None
        if self.attempt >= policy.attempts:
            raise self._exhausted()
        return False

    def last_failure(self) -> BaseException:
        """What to raise when the wait before the next attempt was cut short."""
        return self.failure if self.failure is not None else self._exhausted()

    def next(self) -> None:
        self.failure = None  # holding it would make a cycle: exception -> traceback -> this frame
        self.attempt += 1

    def _exhausted(self) -> Exception:
        results, attempt = self.results, self.attempt
        return RetryValidationError(
            f"{self.method_name}: retry_until ({', '.join(self.rejected)}) rejected the result of "
            f"attempt {attempt} of {self.policy.attempts}: {reprlib.repr(results[-1])}",
            results,
            self.rejected,
            attempt,
            self.method_name,
        )


def call_with_retries(
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    policy: RetryPolicy,
    method_name: str,
    sleep: Callable[[float], bool | None],
    on_attempt_failed: Callable[[int], None] | None = None,
) -> Any:
    """Run ``fn(*args, **kwargs)`` under ``policy``: at most ``policy.attempts`` attempts.

    Returns the first result every ``retry_until`` validator accepts. An exception ``retry_on``
    does not accept (or any non-``Exception``) is raised at once; when attempts run out, the
    last attempt's exception is raised, or ``RetryValidationError`` if it failed only validation.
    ``retry_on`` and ``retry_until`` callables get the context as keywords: ``attempt`` (1-based),
    ``elapsed_time`` (seconds since the first attempt started), ``method_name``, ``args``,
    ``kwargs``; an exception they raise propagates (it is a bug in the check, not a failed attempt).
    """
    start = time.monotonic()
    tries: _Attempts | None = None
    while True:
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            tries = tries or _Attempts(policy, method_name, args, kwargs, start)
            if not tries.retry_after(exc):
                raise
        else:
            if not policy.validators:
                return result
            tries = tries or _Attempts(policy, method_name, args, kwargs, start)
            if tries.accepts(result):
                return result
        # LIMITS: the units the failed attempt still holds go back before the wait (the runtime
        # passes ``on_attempt_failed`` when the worker has resource limits).
        if on_attempt_failed is not None:
            on_attempt_failed(tries.attempt)
        if sleep(policy.delay(tries.attempt)) is False:
            raise tries.last_failure()
        tries.next()


async def call_with_retries_async(
    fn: Callable[..., Awaitable[Any]],
    args: tuple,
    kwargs: dict,
    policy: RetryPolicy,
    method_name: str,
    sleep: Callable[[float], Awaitable[bool | None]],
    on_attempt_failed: Callable[[int], None] | None = None,
) -> Any:
    """``call_with_retries`` for coroutine functions: each attempt awaits ``fn(*args, **kwargs)``
    and the waits await ``sleep`` (``asyncio.sleep``-like), so the loop runs other calls meanwhile."""
    start = time.monotonic()
    tries: _Attempts | None = None
    while True:
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            tries = tries or _Attempts(policy, method_name, args, kwargs, start)
            if not tries.retry_after(exc):
                raise
        else:
            if not policy.validators:
                return result
            tries = tries or _Attempts(policy, method_name, args, kwargs, start)
            if tries.accepts(result):
                return result
        # LIMITS: release the units the failed attempt acquired, before the wait (see above).
        if on_attempt_failed is not None:
            on_attempt_failed(tries.attempt)
        if await sleep(policy.delay(tries.attempt)) is False:
            raise tries.last_failure()
        tries.next()
