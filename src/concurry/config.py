"""``global_config``, ``temp_config`` and the merge of a worker's options over them.

One ``defaults`` section plus one section per mode. A section stores only the settings explicitly
set on it; reading a setting answers what a worker would get: the section's own value if set, else
(for a mode section) the ``defaults`` value if set, else the library's built-in value for that mode.
Every assignment is checked by the same validators as ``options()``.

This is plain Python rather than a pydantic model: every rule is the library's own (shared with
``options()``), and "not set, falls back" is a state a pydantic field cannot read back.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, NamedTuple, TypeVar, overload

from .constants import ExecutionMode, LoadBalancingAlgorithm, PollingAlgorithm, RetryAlgorithm
from .options import (
    RAY_OPTIONS,
    RETRY_OPTIONS,
    SINGLE_WORKER_MODES,
    VALIDATORS,
    RetryConfig,
    WorkerOptions,
    _check_single_worker_modes,
    _expand_retry_config,
    _number,
    layer_per_method,
    resolve_retry,
)

T = TypeVar("T")

# Built-in values that differ by mode; below ``defaults``: a value set there wins over them.
_MODE_BUILT_IN: dict[ExecutionMode, dict[str, Any]] = {
    ExecutionMode.PROCESS: {"max_queued_tasks": 100},
    ExecutionMode.RAY: {"max_queued_tasks": 3},
}
# Values a mode always runs with, whatever ``defaults`` says: sync and asyncio run one worker.
_MODE_FIXED: dict[ExecutionMode, dict[str, Any]] = {m: {"max_workers": 1} for m in SINGLE_WORKER_MODES}


class SettingValue(NamedTuple):
    """One row of ``Settings.explain()``: the effective value and where it comes from."""

    value: Any
    is_set: bool  # set explicitly on this section
    source: str  # "global_config.<section>", "global_config.defaults" or "built-in"


class _Setting(Generic[T]):
    """One setting of a section: reads the effective value, validates on set, unsets on ``del``."""

    def __init__(self, built_in: T, validate: Callable[[str, Any], Any]) -> None:
        self.built_in = built_in
        self.validate = validate

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _Setting[T]: ...
    @overload
    def __get__(self, obj: Settings, owner: type | None = None) -> T: ...
    def __get__(self, obj: Settings | None, owner: type | None = None) -> Any:
        return self if obj is None else obj._value(self.name)

    def __set__(self, obj: Settings, value: Any) -> None:
        obj._assign(self.name, value)

    def __delete__(self, obj: Settings) -> None:
        obj._set.pop(self.name, None)


class Settings:
    """The settings of one section (``global_config.thread``, ...).

    Reading a setting gives its effective value (see the module docstring); assigning validates
    it and raises ``ValueError``/``TypeError`` naming the setting; ``del section.name`` makes it
    "not set" again (it then falls back; a no-op if it was not set). ``None`` is a real value
    (``max_queued_tasks=None`` is "no cap"), so it does not mean "unset".
    """

    __slots__ = ("_built_in", "_fallback", "_fixed", "_name", "_set")

    max_workers = _Setting[int](1, VALIDATORS["max_workers"])
    max_queued_tasks = _Setting[int | None](None, VALIDATORS["max_queued_tasks"])
    load_balancing = _Setting[LoadBalancingAlgorithm](
        LoadBalancingAlgorithm.ROUND_ROBIN, VALIDATORS["load_balancing"]
    )
    load_balancing_on_demand = _Setting[LoadBalancingAlgorithm](
        LoadBalancingAlgorithm.RANDOM, VALIDATORS["load_balancing_on_demand"]
    )
    blocking = _Setting[bool](False, VALIDATORS["blocking"])
    unwrap_futures = _Setting[bool](True, VALIDATORS["unwrap_futures"])
    num_retries = _Setting[Any](0, VALIDATORS["num_retries"])
    retry_on = _Setting[Any](Exception, VALIDATORS["retry_on"])
    retry_algorithm = _Setting[Any](RetryAlgorithm.EXPONENTIAL, VALIDATORS["retry_algorithm"])
    retry_wait = _Setting[Any](1.0, VALIDATORS["retry_wait"])
    retry_jitter = _Setting[Any](0.3, VALIDATORS["retry_jitter"])
    retry_until = _Setting[Any](None, VALIDATORS["retry_until"])
    mp_context = _Setting[str]("spawn", VALIDATORS["mp_context"])
    stop_timeout = _Setting[float](30.0, VALIDATORS["stop_timeout"])
    polling_algorithm = _Setting[PollingAlgorithm](
        PollingAlgorithm.ADAPTIVE, lambda n, v: PollingAlgorithm.parse(v, n)
    )
    polling_interval = _Setting[float](0.01, lambda n, v: _number(n, v, 0.0))

    SETTINGS: tuple[str, ...] = ()  # filled below: the names this kind of section accepts

    def __init__(self, name: str, fallback: Settings | None = None) -> None:
        mode = ExecutionMode(name) if fallback is not None else None
        built_in = {n: getattr(type(self), n).built_in for n in self.SETTINGS}
        built_in.update(_MODE_BUILT_IN.get(mode, {}) if mode else {})
        fixed = _MODE_FIXED.get(mode, {}) if mode else {}
        init = object.__setattr__  # this class's own __setattr__ takes settings only
        init(self, "_name", name)
        init(self, "_set", {})  # the settings set explicitly on this section
        init(self, "_fallback", fallback)
        init(self, "_fixed", fixed)
        init(self, "_built_in", built_in)

    def _value(self, name: str) -> Any:
        # the path init() takes for every setting: plain dict look-ups
        if name in self._fixed:
            return self._fixed[name]
        fallback = self._fallback
        if name in self._set:
            value = self._set[name]
            if fallback is not None and type(value) is dict and "*" not in value:
                # a per-method retry dict naming some methods: the others keep the defaults' value
                return layer_per_method(value, fallback._set.get(name, self._built_in[name]))
            return value
        if fallback is not None and name in fallback._set:
            return fallback._set[name]
        return self._built_in[name]

    def _assign(self, name: str, value: Any) -> None:
        where = f"global_config.{self._name}.{name}"
        value = getattr(type(self), name).validate(where, value)
        if name == "mp_context" and self._name not in ("defaults", "process"):
            raise ValueError(
                f"{where}={value!r} is not accepted: mp_context only applies to process workers "
                "(it picks how worker processes start); set global_config.process.mp_context"
            )
        if name in self._fixed and value != self._fixed[name]:
            raise ValueError(
                f"{where}={value!r} is not accepted: sync and asyncio run one worker, so only 1 is "
                "allowed; set global_config.thread.max_workers, global_config.process.max_workers or "
                "global_config.defaults.max_workers (which sync/asyncio ignore) for pools"
            )
        self._set[name] = value

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "retry_config":  # sets each retry option the RetryConfig gives, all or none
            expanded = _expand_retry_config({"retry_config": value})
            for option, option_value in expanded.items():
                VALIDATORS[option](f"global_config.{self._name}.{option}", option_value)
            self._set.update(expanded)
            return
        if name not in self.SETTINGS:
            raise ValueError(self._unknown(name))
        object.__setattr__(self, name, value)  # the _Setting validates and stores it

    def __delattr__(self, name: str) -> None:
        if name == "retry_config":
            for option in RETRY_OPTIONS:
                self._set.pop(option, None)
            return
        if name not in self.SETTINGS:
            raise AttributeError(self._unknown(name))
        object.__delattr__(self, name)

    def __getattr__(self, name: str) -> Any:  # only reached for names that are not settings
        if name == "retry_config":  # the effective retry options, as one value
            return RetryConfig(**{option: self._value(option) for option in RETRY_OPTIONS})
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(self._unknown(name))

    def _unknown(self, name: str) -> str:
        if name == "mode":
            return (
                f"global_config.{self._name} has no 'mode' setting: the section holds the settings of "
                f"{self._name} workers; the mode of workers that do not choose one is "
                "global_config.defaults.mode"
            )
        return (
            f"unknown setting {name!r} for global_config.{self._name}; accepted settings: "
            f"{', '.join(self.SETTINGS)}"
        )

    @property
    def model_fields_set(self) -> frozenset[str]:
        """The names set explicitly on this section (the rest fall back)."""
        return frozenset(self._set)

    def model_dump(self, exclude_unset: bool = False) -> dict[str, Any]:
        """Every setting's effective value; with ``exclude_unset`` only those set on this section."""
        if exclude_unset:
            return {name: self._set[name] for name in self.SETTINGS if name in self._set}
        return {name: self._value(name) for name in self.SETTINGS}

    def explain(self) -> dict[str, SettingValue]:
        """For each setting its effective value, whether it is set here, and where it comes from."""
        out = {}
        for name in self.SETTINGS:
            is_set = name in self._set
            if name in self._fixed:
                source = f"built-in ({self._name} runs one worker)"
            elif is_set:
                source = f"global_config.{self._name}"
            elif self._fallback is not None and name in self._fallback._set:
                source = "global_config.defaults"
            else:
                source = "built-in"
            out[name] = SettingValue(self._value(name), is_set, source)
        return out

    def __repr__(self) -> str:
        values = ", ".join(f"{k}={v!r}" for k, v in self.model_dump(exclude_unset=True).items())
        return f"global_config.{self._name}({values or 'nothing set'}; .explain() shows every value)"


class DefaultSettings(Settings):
    """``global_config.defaults``: the mode sections' fallback, plus the default ``mode``."""

    __slots__ = ()

    mode = _Setting[ExecutionMode](ExecutionMode.SYNC, VALIDATORS["mode"])


Settings.SETTINGS = tuple(n for n, v in vars(Settings).items() if isinstance(v, _Setting))
DefaultSettings.SETTINGS = ("mode", *Settings.SETTINGS)


class GlobalConfig:
    """The library-wide defaults: ``global_config.defaults`` and ``global_config.<mode>``."""

    SECTIONS = ("defaults", *(m.value for m in ExecutionMode))

    defaults: DefaultSettings
    sync: Settings
    thread: Settings
    asyncio: Settings
    process: Settings
    ray: Settings

    def __init__(self) -> None:
        defaults = DefaultSettings("defaults")
        sections: dict[str, Settings] = {"defaults": defaults}
        sections.update({m.value: Settings(m.value, defaults) for m in ExecutionMode})
        object.__setattr__(self, "_lock", threading.RLock())
        object.__setattr__(self, "_sections", sections)
        for name, section in sections.items():
            object.__setattr__(self, name, section)

    def reset(self) -> None:
        """Make every setting of every section "not set" again (the library's defaults)."""
        for section in self._sections.values():
            section._set.clear()

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.SECTIONS:
            raise TypeError(
                f"global_config.{name} is a section, not a value: set its settings instead, "
                f"e.g. global_config.{name}.max_workers = 8"
            )
        raise ValueError(
            f"unknown config section {name!r}; sections: {', '.join(self.SECTIONS)} "
            f"(set a value on one of them, e.g. global_config.thread.max_workers = 8)"
        )

    def __getattr__(self, name: str) -> Any:  # only reached for names that do not exist
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(f"global_config has no section {name!r}; sections: {', '.join(self.SECTIONS)}")

    def section(self, name: str) -> Settings:
        """The section called ``name`` (``"defaults"`` or a mode)."""
        try:
            return self._sections[name]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown config section {name!r}; sections: {', '.join(self.SECTIONS)}"
            ) from None

    def default_mode(self) -> ExecutionMode:
        return self.defaults.mode

    def lookup(self, mode: ExecutionMode | str, name: str) -> Any:
        """The effective value of setting ``name`` for workers of ``mode``."""
        return self._sections[ExecutionMode.parse(mode)]._value(name)

    def effective(self, mode: ExecutionMode | str) -> dict[str, Any]:
        """A dump of the settings a worker of ``mode`` would get."""
        return self._sections[ExecutionMode.parse(mode)].model_dump()

    def model_dump(self, exclude_unset: bool = False) -> dict[str, dict[str, Any]]:
        """Each section's ``model_dump()``."""
        return {name: s.model_dump(exclude_unset) for name, s in self._sections.items()}

    def __repr__(self) -> str:
        changed = {name: d for name, d in self.model_dump(exclude_unset=True).items() if d}
        return f"GlobalConfig(set={changed})"


global_config = GlobalConfig()


def resolve_options(given: Mapping[str, Any]) -> WorkerOptions:
    """Merge validated user options over ``global_config`` at ``init()``: options win over
    the mode's section, which wins over ``defaults``."""
    mode = given.get("mode") or global_config.defaults.mode
    lookup = global_config._sections[mode]._value

    def pick(name: str) -> Any:
        return given[name] if name in given else lookup(name)

    on_demand = given.get("on_demand", False)
    balancing = given.get("load_balancing") or lookup(
        "load_balancing_on_demand" if on_demand else "load_balancing"
    )
    values = {"mode": mode, "on_demand": on_demand}
    if "max_workers" in given:  # the user asked for this pool size: it must fit the mode
        max_workers = values["max_workers"] = given["max_workers"]
    else:
        # A pool size from global_config is a default, not a request: sync/asyncio get 1 (their
        # sections see to that), and 0 (meaningful only for on-demand pools) means one worker otherwise.
        max_workers = lookup("max_workers")
        if max_workers == 0 and not on_demand:
            max_workers = 1
    _check_single_worker_modes(values)
    return WorkerOptions(
        mode=mode,
        max_workers=max_workers,
        load_balancing=balancing,
        on_demand=on_demand,
        max_queued_tasks=pick("max_queued_tasks"),
        blocking=pick("blocking"),
        unwrap_futures=pick("unwrap_futures"),
        limits=given.get("limits"),
        retry=resolve_retry(given, lookup),
        mp_context=pick("mp_context"),
        ray_options={k: v for k, v in given.items() if k in RAY_OPTIONS},
        stop_timeout=pick("stop_timeout"),
    )


def _split_key(key: str, value: Any) -> list[tuple[tuple[Settings, str], Any]]:
    for section in (*GlobalConfig.SECTIONS, "global"):
        prefix = section + "_"
        if key.startswith(prefix):
            target = global_config.section("defaults" if section == "global" else section)
            name = key[len(prefix) :]
            if name == "retry_config":  # the retry options it gives, each set (and restored) alone
                expanded = _expand_retry_config({"retry_config": value})
                return [((target, option), v) for option, v in expanded.items()]
            if name in target.SETTINGS:
                return [((target, name), value)]
            if name == "mode":
                raise ValueError(
                    f"unknown temp_config key {key!r}: {target._unknown(name)} (global_mode=...)"
                )
    raise ValueError(
        f"unknown temp_config key {key!r}: keys are '<section>_<setting>' with section one of "
        f"global, {', '.join(m.value for m in ExecutionMode)} and setting one of "
        f"{', '.join(DefaultSettings.SETTINGS)} (e.g. global_num_retries=3, thread_max_workers=100)"
    )


@contextlib.contextmanager
def temp_config(**settings: Any) -> Iterator[GlobalConfig]:
    """Change ``global_config`` inside a ``with`` block; on exit every setting it changed is again
    exactly what it was, "not set" included (also on error). An invalid value changes nothing."""
    targets = [pair for key, value in settings.items() for pair in _split_key(key, value)]
    saved: list[tuple[Settings, str, bool, Any]] = []
    with global_config._lock:
        try:
            for (section, name), value in targets:
                saved.append((section, name, name in section._set, section._set.get(name)))
                setattr(section, name, value)
        except BaseException:
            _restore(saved)
            raise
    try:
        yield global_config
    finally:
        with global_config._lock:
            _restore(saved)


def _restore(saved: list[tuple[Settings, str, bool, Any]]) -> None:
    for section, name, was_set, value in reversed(saved):
        if was_set:
            section._set[name] = value  # it was valid when saved: no need to re-validate
        else:
            section._set.pop(name, None)
