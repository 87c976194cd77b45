"""Worker options: each one validated once, at ``options()``/``@worker(...)`` time.

``validate_options`` checks what the user typed; ``config.resolve_options`` merges those values
with ``global_config`` at ``init()`` time into one immutable ``WorkerOptions``, which is then
passed down and never re-validated on the hot path. ``config`` imports this module, not back.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .constants import ExecutionMode, LoadBalancingAlgorithm, RetryAlgorithm
from .limits import Limit, LimitPool, LimitSet

MP_CONTEXTS = ("spawn", "forkserver", "fork")

# Ray actor options passed through untouched; ignored by the other modes. (Not
# ``concurrency_groups``: the actor class declares its own, and Ray refuses it in ``.options()``.)
RAY_OPTIONS = frozenset(
    {
        "num_cpus", "num_gpus", "resources", "runtime_env", "memory", "accelerator_type",
        "max_restarts", "max_task_retries", "max_concurrency", "name", "namespace", "lifetime",
        "scheduling_strategy", "placement_group", "placement_group_bundle_index",
        "placement_group_capture_child_tasks", "label_selector", "get_if_exists", "enable_task_events",
    }
)
RETRY_OPTIONS = ("num_retries", "retry_on", "retry_algorithm", "retry_wait", "retry_jitter", "retry_until")
CORE_OPTIONS = (
    "mode", "max_workers", "load_balancing", "on_demand", "max_queued_tasks", "blocking",
    "unwrap_futures", "limits", *RETRY_OPTIONS, "retry_config", "mp_context",
)
ACCEPTED_OPTIONS = frozenset(CORE_OPTIONS) | RAY_OPTIONS


# ---- single-value validators: each returns the normalised value or raises a clear error ----

def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _number(name: str, value: Any, low: float, high: float | None = None) -> float:
    bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a finite number {bounds}, got {value!r}")
    try:
        value = float(value)
    except OverflowError:  # an int too large for a float
        raise ValueError(f"{name} must be a finite number {bounds}, got an int of {value.bit_length()} bits")
    # inf is refused too: a wait or timeout of forever breaks "nothing blocks forever"
    if not math.isfinite(value) or value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be a finite number {bounds}, got {value!r}")
    return value


def _per_method(name: str, value: Any, check: Callable[[str, Any], Any]) -> Any:
    """Retry options accept a dict of method name -> value, with ``"*"`` as the default key."""
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{name} keys must be method names (str) or '*', got {key!r}")
            out[key] = check(f"{name}[{key!r}]", item)
        return out
    return check(name, value)


# The keywords the library passes to retry_on and retry_until callables (the call context).
RETRY_CONTEXT = ("attempt", "elapsed_time", "method_name", "args", "kwargs")


def _check_signature(name: str, fn: Callable[..., Any], first: str, positional: bool, what: str) -> None:
    """Refuse now a callable that could not take the arguments it will be called with, rather
    than failing the user's call later. Callables without an inspectable signature pass."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        if positional:
            signature.bind(None, **dict.fromkeys(RETRY_CONTEXT))
        else:
            signature.bind(**dict.fromkeys((first, *RETRY_CONTEXT)))
    except TypeError as exc:
        how = f"the {first} first" if positional else f"{first}=..."
        raise TypeError(
            f"{name} must be {what} called with {how} and the keywords {', '.join(RETRY_CONTEXT)}, "
            f"e.g. `def check({first}, **ctx)`; {fn!r} cannot be called so: {exc}"
        ) from None


def _retry_on_item(name: str, item: Any) -> Any:
    if isinstance(item, type) and issubclass(item, BaseException):
        return item
    if callable(item) and not isinstance(item, type):
        _check_signature(name, item, "exception", False, "an exception class or a callable -> bool")
        return item
    raise TypeError(
        f"{name} must be an exception class or a callable (exception=..., **ctx) -> bool, got {item!r}"
    )


def _retry_on(name: str, value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_retry_on_item(name, v) for v in value)
    return _retry_on_item(name, value)


def _retry_until(name: str, value: Any) -> Any:
    if value is None:
        return None
    items = value if isinstance(value, (list, tuple)) else (value,)
    for item in items:
        if not callable(item) or isinstance(item, type):  # a class "called" makes an object, not a verdict
            raise TypeError(
                f"{name} must be a callable (result, **ctx) -> bool or a list of them, got {item!r}"
            )
        _check_signature(name, item, "result", True, "a callable -> bool (or a list of them)")
    if isinstance(value, (list, tuple)):
        return tuple(items) or None  # an empty list: no validators
    return value


_LIMITS_ACCEPTED = (
    "a LimitSet, a LimitPool, a list of Limit objects (RateLimit, CallLimit, ResourceLimit) or None"
)


def _limits(name: str, value: Any) -> Any:
    """A ``LimitSet`` or ``LimitPool`` as it is; a list of limits as a tuple (made into a set at
    ``init()``, where it is known whether one worker or a whole pool shares it)."""
    if value is None or isinstance(value, (LimitSet, LimitPool)):
        return value
    if isinstance(value, (list, tuple)):
        keys: set[str] = set()
        for item in value:
            if not isinstance(item, Limit):
                raise TypeError(f"{name} must be {_LIMITS_ACCEPTED}; the list holds {item!r}")
            if item.key in keys:
                raise ValueError(f"{name} has two limits with the key {item.key!r}; give each key once")
            keys.add(item.key)
        return tuple(value)
    raise TypeError(f"{name} must be {_LIMITS_ACCEPTED}, got {value!r}")


def _max_queued(name: str, value: Any) -> int | None:
    return None if value is None else _int(name, value, 1)


VALIDATORS: dict[str, Callable[[str, Any], Any]] = {
    "mode": lambda n, v: ExecutionMode.parse(v, n),
    "max_workers": lambda n, v: _int(n, v, 0),
    "load_balancing": lambda n, v: LoadBalancingAlgorithm.parse(v, n),
    "load_balancing_on_demand": lambda n, v: LoadBalancingAlgorithm.parse(v, n),
    "on_demand": _bool,
    "max_queued_tasks": _max_queued,
    "blocking": _bool,
    "unwrap_futures": _bool,
    "limits": _limits,
    "num_retries": lambda n, v: _per_method(n, v, lambda n2, v2: _int(n2, v2, 0)),
    "retry_on": lambda n, v: _per_method(n, v, _retry_on),
    "retry_algorithm": lambda n, v: _per_method(n, v, lambda n2, v2: RetryAlgorithm.parse(v2, n2)),
    "retry_wait": lambda n, v: _per_method(n, v, lambda n2, v2: _number(n2, v2, 0.0)),
    "retry_jitter": lambda n, v: _per_method(n, v, lambda n2, v2: _number(n2, v2, 0.0, 1.0)),
    "retry_until": lambda n, v: _per_method(n, v, _retry_until),
    "mp_context": lambda n, v: _choice(n, v, MP_CONTEXTS),
    "stop_timeout": lambda n, v: _number(n, v, 0.0),
}


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if isinstance(value, str) and value.lower() in choices:
        return value.lower()
    raise ValueError(f"{name}={value!r} is not accepted; use one of {', '.join(map(repr, choices))}")


def _mode_options(mode: ExecutionMode | None) -> tuple[str, ...]:
    """The worker options that apply to ``mode`` (``mp_context`` only to process workers);
    all of them when the mode is not known yet."""
    if mode is None or mode is ExecutionMode.PROCESS:
        return CORE_OPTIONS
    return tuple(name for name in CORE_OPTIONS if name != "mp_context")


def _unknown(name: str, mode: ExecutionMode | None = None) -> ValueError:
    """The error for an option nobody accepts: the options of the mode at hand, and the closest
    name (a typo is the usual cause)."""
    listed = _mode_options(mode)
    candidates = (*listed, *sorted(RAY_OPTIONS)) if mode in (None, ExecutionMode.RAY) else listed
    close = difflib.get_close_matches(name, candidates, n=1) or difflib.get_close_matches(
        name, sorted(ACCEPTED_OPTIONS), n=1
    )
    hint = f" Did you mean {close[0]!r}?" if close else ""
    if close and close[0] in RAY_OPTIONS and mode is not ExecutionMode.RAY:
        hint = f" Did you mean {close[0]!r} (a Ray actor option, for mode='ray')?"
    if mode is ExecutionMode.RAY:
        accepted = (
            f"Accepted options for mode='ray': {', '.join(listed)}, "
            f"and the Ray actor options {', '.join(sorted(RAY_OPTIONS))}"
        )
    elif mode is not None:
        accepted = f"Accepted options for mode={mode.value!r}: {', '.join(listed)}"
    else:
        accepted = (
            f"Accepted options: {', '.join(listed)}; Ray actor options (num_cpus, num_gpus, "
            "resources, runtime_env, ...) apply to mode='ray'"
        )
    return ValueError(f"unknown worker option {name!r}.{hint} {accepted}")


def _check_mp_context(options: Mapping[str, Any], mode: ExecutionMode | None) -> None:
    """``mp_context`` picks how worker processes start: refused with any other mode. Only the
    layer that sets it is checked, so ``.options(mode="thread")`` over a process worker's
    ``@worker(mp_context=...)`` is fine (switching a worker to threads to debug it)."""
    if "mp_context" in options and mode is not None and mode is not ExecutionMode.PROCESS:
        raise ValueError(
            f"mp_context={options['mp_context']!r} only applies to mode='process' (it picks how "
            f"worker processes start), not to mode={mode.value!r}; remove it or use mode='process'"
        )


def validate_options(options: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate user-given options (``options()``/``@worker(...)``) and return them normalised,
    laid over ``base`` (the layers given before, already validated) if given. The options apply
    to their own ``mode``, else to ``base``'s: messages about them name that mode's options."""
    out: dict[str, Any] = {}
    mode = base.get("mode") if base else None
    if "mode" in options:  # first: the messages about the other options depend on it
        mode = out["mode"] = VALIDATORS["mode"]("mode", options["mode"])
    if "retry_config" in options:
        options = _expand_retry_config(options)
    for name, value in options.items():
        if name not in ACCEPTED_OPTIONS:
            raise _unknown(name, mode)
        if name != "mode":
            out[name] = value if name in RAY_OPTIONS else VALIDATORS[name](name, value)
    _check_mp_context(out, mode)  # only the layer that sets it
    if base is not None:
        # a per-method retry dict without "*" keeps the layers below for the methods it does not name
        both = [name for name in RETRY_OPTIONS if name in out and name in base]
        out = {**base, **out, **{name: layer_per_method(out[name], base[name]) for name in both}}
    _check_single_worker_modes(out, complete=base is not None)
    return out


SINGLE_WORKER_MODES = (ExecutionMode.SYNC, ExecutionMode.ASYNCIO)


def _check_single_worker_modes(values: Mapping[str, Any], complete: bool = True) -> None:
    """Check a combination of user-given options: sync/asyncio take only ``max_workers=1`` and
    no ``on_demand``; ``max_workers=0`` is defined only for on-demand pools.

    ``complete=False`` is for one layer alone (``@worker(...)`` or one ``options()`` call), whose
    missing ``on_demand`` may come from another layer: ``@worker(on_demand=True)`` then
    ``.options(max_workers=0)`` is fine. The merged layers and ``init()`` check with ``complete``."""
    mode, max_workers = values.get("mode"), values.get("max_workers")
    if mode in SINGLE_WORKER_MODES and max_workers not in (None, 1):
        raise ValueError(
            f"max_workers={max_workers!r} is not accepted for mode={mode.value!r}: "
            f"{mode.value} workers run on one thread, so only max_workers=1 is allowed; "
            "use mode='thread' or mode='process' for a pool"
        )
    if mode in SINGLE_WORKER_MODES and values.get("on_demand"):
        raise ValueError(f"on_demand=True is not accepted for mode={mode.value!r}; use 'thread' or 'process'")
    if max_workers == 0 and not values.get("on_demand") and (complete or "on_demand" in values):
        raise ValueError(
            "max_workers=0 is only accepted together with on_demand=True (an on-demand pool with no "
            "fixed cap); accepted values: max_workers=1 for one worker, max_workers=N (N > 1) for a "
            "pool of N, or max_workers=0 or N with on_demand=True"
        )


@dataclass(frozen=True)
class RetryOptions:
    """Retry settings as resolved for one worker; ``retry.policy_for`` reads them per method.

    Each value is validated, and may be a per-method dict (``{"fetch": 5, "*": 1}``)."""

    num_retries: Any = 0
    retry_on: Any = Exception
    retry_algorithm: Any = RetryAlgorithm.EXPONENTIAL
    retry_wait: Any = 1.0
    retry_jitter: Any = 0.3
    retry_until: Any = None


@dataclass(frozen=True)
class WorkerOptions:
    """Every setting one worker (or pool) runs with, resolved once at ``init()``."""

    mode: ExecutionMode
    max_workers: int = 1
    load_balancing: LoadBalancingAlgorithm = LoadBalancingAlgorithm.ROUND_ROBIN
    on_demand: bool = False
    max_queued_tasks: int | None = None
    blocking: bool = False
    unwrap_futures: bool = True
    # as given (a list as a tuple) until ``init()``, where ``worker_limits.bind_limits`` makes it a set
    limits: LimitSet | LimitPool | tuple[Limit, ...] | None = None
    retry: RetryOptions = field(default_factory=RetryOptions)
    mp_context: str = "spawn"
    ray_options: Mapping[str, Any] = field(default_factory=dict)
    stop_timeout: float = 30.0

    @property
    def is_pool(self) -> bool:
        return self.on_demand or self.max_workers > 1



# ---- per-method dicts and RetryConfig ----

def layer_per_method(value: Any, below: Any) -> Any:
    """``value`` laid over the layer below it (the decorator's, then ``global_config``'s value).

    A per-method dict without ``"*"`` names only some methods: the others keep what the layer
    below gives them. A plain value, or a dict with ``"*"``, says everything and replaces it."""
    if isinstance(value, Mapping) and "*" not in value:
        lower = dict(below) if isinstance(below, Mapping) else {"*": below}
        return {**lower, **value}
    return value


def resolve_retry(given: Mapping[str, Any], lookup: Callable[[str], Any]) -> RetryOptions:
    """The retry options a worker runs with: the user's layers over ``global_config``'s values
    (``lookup``), a per-method dict without ``"*"`` keeping them for the methods it does not name."""
    return RetryOptions(
        **{
            name: layer_per_method(given[name], lookup(name)) if name in given else lookup(name)
            for name in RETRY_OPTIONS
        }
    )


class _NotGiven:
    def __repr__(self) -> str:
        return "<not given>"


_NOT_GIVEN: Any = _NotGiven()


class RetryConfig:
    """The retry options in one value: ``W.options(retry_config=RetryConfig(num_retries=3))``.

    Accepted wherever the separate options are (``options()``, ``@worker(...)``, ``@task(...)``,
    ``Executor(...)``) as ``retry_config=``, also as a per-method dict
    ``retry_config={"fetch": RetryConfig(...), "*": RetryConfig(...)}``. Each option is validated
    now; only the options given are kept (``given``), so the others fall back as usual. An
    attribute not given reads as the library's built-in value.
    """

    __slots__ = ("_given",)

    def __init__(
        self,
        *,
        num_retries: int | Mapping[str, int] = _NOT_GIVEN,
        retry_on: Any = _NOT_GIVEN,
        retry_algorithm: RetryAlgorithm | str | Mapping[str, RetryAlgorithm | str] = _NOT_GIVEN,
        retry_wait: float | Mapping[str, float] = _NOT_GIVEN,
        retry_jitter: float | Mapping[str, float] = _NOT_GIVEN,
        retry_until: Any = _NOT_GIVEN,
    ) -> None:
        values = {
            "num_retries": num_retries, "retry_on": retry_on, "retry_algorithm": retry_algorithm,
            "retry_wait": retry_wait, "retry_jitter": retry_jitter, "retry_until": retry_until,
        }
        self._given = {
            name: VALIDATORS[name](f"RetryConfig {name}", value)
            for name, value in values.items()
            if value is not _NOT_GIVEN
        }

    @property
    def given(self) -> dict[str, Any]:
        """The options this config sets (validated and normalised)."""
        return dict(self._given)

    def _value(self, name: str) -> Any:
        return self._given[name] if name in self._given else getattr(RetryOptions, name)

    num_retries = property(lambda self: self._value("num_retries"))
    retry_on = property(lambda self: self._value("retry_on"))
    retry_algorithm = property(lambda self: self._value("retry_algorithm"))
    retry_wait = property(lambda self: self._value("retry_wait"))
    retry_jitter = property(lambda self: self._value("retry_jitter"))
    retry_until = property(lambda self: self._value("retry_until"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RetryConfig) and other._given == self._given

    __hash__ = None  # type: ignore[assignment]  # values may be dicts

    def __getstate__(self) -> dict[str, Any]:
        return self._given

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._given = dict(state)

    def __repr__(self) -> str:
        return f"RetryConfig({', '.join(f'{k}={v!r}' for k, v in self._given.items())})"


def _expand_retry_config(options: Mapping[str, Any]) -> dict[str, Any]:
    """``retry_config=`` replaced by the separate options it sets (per-method dicts of configs
    become per-method dicts of each option). Giving an option both ways is refused."""
    config = options["retry_config"]
    if isinstance(config, RetryConfig):
        expanded = config.given
    elif isinstance(config, Mapping):
        expanded = {}
        for method, item in config.items():
            where = f"retry_config[{method!r}]"
            if not isinstance(method, str):
                raise TypeError(f"retry_config keys must be method names (str) or '*', got {method!r}")
            if not isinstance(item, RetryConfig):
                raise TypeError(f"{where} must be a RetryConfig, got {item!r}")
            for name, value in item._given.items():
                if isinstance(value, Mapping):
                    raise TypeError(
                        f"{where} has a per-method {name}={value!r}; inside a per-method retry_config "
                        "give plain values (the dict's keys already name the methods)"
                    )
                expanded.setdefault(name, {})[method] = value
    else:
        raise TypeError(
            "retry_config must be a RetryConfig(...) or a dict of method name (or '*') -> RetryConfig, "
            f"got {config!r}"
        )
    twice = sorted(set(expanded) & set(options))
    if twice:
        raise ValueError(
            f"{', '.join(twice)} given both as an option and in retry_config={config!r}; give each "
            "retry option once"
        )
    rest = {name: value for name, value in options.items() if name != "retry_config"}
    return {**rest, **expanded}
