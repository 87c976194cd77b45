"""``global_config`` and ``temp_config`` (SPEC §9).

One ``defaults`` section plus one section per mode. A mode section only overrides the settings
that were explicitly set on it; everything else falls back to ``defaults``. Every assignment is
validated with the same validators as ``options()``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator

from .constants import ExecutionMode, LoadBalancingAlgorithm, PollingAlgorithm, RetryAlgorithm
from .options import SINGLE_WORKER_MODES, VALIDATORS, _check_single_worker_modes


class _Section(BaseModel):
    """Settings of one section; unset fields of a mode section fall back to ``defaults``."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid", arbitrary_types_allowed=True)

    mode: ExecutionMode = ExecutionMode.SYNC
    max_workers: int = 1
    max_queued_tasks: int | None = None
    load_balancing: LoadBalancingAlgorithm = LoadBalancingAlgorithm.ROUND_ROBIN
    load_balancing_on_demand: LoadBalancingAlgorithm = LoadBalancingAlgorithm.RANDOM
    blocking: bool = False
    unwrap_futures: bool = True
    num_retries: Any = 0
    retry_on: Any = Exception
    retry_algorithm: Any = RetryAlgorithm.EXPONENTIAL
    retry_wait: Any = 1.0
    retry_jitter: Any = 0.3
    retry_until: Any = None
    mp_context: str = "spawn"
    stop_timeout: float = 30.0
    polling_algorithm: PollingAlgorithm = PollingAlgorithm.ADAPTIVE
    polling_interval: float = 0.01

    _section_name: str = PrivateAttr(default="defaults")

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            return super().__setattr__(name, value)
        section = self._section_name
        if name not in type(self).model_fields:
            raise ValueError(
                f"unknown setting {name!r} for global_config.{section}; accepted settings: "
                f"{', '.join(type(self).model_fields)}"
            )
        if name == "max_workers" and section != "defaults":
            value = VALIDATORS[name](name, value)
            try:  # the rule lives in options; here only the advice on where to set a pool size
                _check_single_worker_modes({"mode": ExecutionMode(section), "max_workers": value}, False)
            except ValueError:
                raise ValueError(
                    f"global_config.{section}.max_workers={value!r} is not accepted: sync and asyncio "
                    "run one worker, so only 1 is allowed; set global_config.thread.max_workers, "
                    "global_config.process.max_workers or global_config.defaults.max_workers "
                    "(which sync/asyncio ignore) for pools"
                ) from None
        super().__setattr__(name, value)

    @field_validator("*", mode="before")
    @classmethod
    def _validate(cls, value: Any, info: Any) -> Any:
        name = info.field_name
        if name == "polling_algorithm":
            return PollingAlgorithm.parse(value, name)
        if name == "polling_interval":
            return VALIDATORS["retry_wait"](name, value)
        return VALIDATORS[name](name, value)


_MODE_DEFAULTS: dict[ExecutionMode, dict[str, Any]] = {
    ExecutionMode.PROCESS: {"max_queued_tasks": 100},
    ExecutionMode.RAY: {"max_queued_tasks": 3},
}


class GlobalConfig:
    """The library-wide defaults: ``global_config.defaults`` and ``global_config.<mode>``."""

    SECTIONS = ("defaults", *(m.value for m in ExecutionMode))

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Restore every section to the library's defaults."""
        self.defaults = _Section()
        for mode in ExecutionMode:
            section = _Section(**_MODE_DEFAULTS.get(mode, {}))
            section._section_name = mode.value
            setattr(self, mode.value, section)

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "_lock" and name not in self.SECTIONS:
            raise ValueError(
                f"unknown config section {name!r}; sections: {', '.join(self.SECTIONS)} "
                f"(set a value on one of them, e.g. global_config.thread.max_workers = 8)"
            )
        object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:  # only reached for names that do not exist
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(f"global_config has no section {name!r}; sections: {', '.join(self.SECTIONS)}")

    def section(self, name: str) -> _Section:
        if name not in self.SECTIONS:
            raise ValueError(f"unknown config section {name!r}; sections: {', '.join(self.SECTIONS)}")
        return getattr(self, name)

    def default_mode(self) -> ExecutionMode:
        return self.defaults.mode

    def lookup(self, mode: ExecutionMode, name: str) -> Any:
        """The effective value of ``name`` for ``mode``: the mode's own if set, else the default."""
        mode = ExecutionMode.parse(mode)
        if name == "max_workers" and mode in SINGLE_WORKER_MODES:
            return 1  # sync/asyncio run one worker whatever pool size the defaults give
        section = getattr(self, mode.value)
        if name in section.model_fields_set:
            return getattr(section, name)
        return getattr(self.defaults, name)

    def effective(self, mode: ExecutionMode | str) -> dict[str, Any]:
        """A dump of the settings a worker of ``mode`` would get."""
        return {name: self.lookup(ExecutionMode.parse(mode), name) for name in _Section.model_fields}

    def __repr__(self) -> str:
        return f"GlobalConfig(defaults={self.defaults.model_dump()})"


global_config = GlobalConfig()


def _split_key(key: str) -> tuple[str, str]:
    for section in (*GlobalConfig.SECTIONS, "global"):
        prefix = section + "_"
        if key.startswith(prefix) and key[len(prefix):] in _Section.model_fields:
            return ("defaults" if section == "global" else section), key[len(prefix):]
    raise ValueError(
        f"unknown temp_config key {key!r}: keys are '<section>_<setting>' with section one of "
        f"global, {', '.join(m.value for m in ExecutionMode)} and setting one of "
        f"{', '.join(_Section.model_fields)} (e.g. global_num_retries=3, thread_max_workers=100)"
    )


@contextlib.contextmanager
def temp_config(**settings: Any) -> Iterator[GlobalConfig]:
    """Change ``global_config`` inside a ``with`` block; every value is restored on exit."""
    targets = [(_split_key(key), value) for key, value in settings.items()]
    saved = []
    with global_config._lock:
        try:
            for (section_name, name), value in targets:
                section = global_config.section(section_name)
                saved.append((section, name, name in section.model_fields_set, getattr(section, name)))
                setattr(section, name, value)
        except BaseException:
            _restore(saved)
            raise
    try:
        yield global_config
    finally:
        with global_config._lock:
            _restore(saved)


def _restore(saved: list) -> None:
    for section, name, was_set, value in reversed(saved):
        section.__dict__[name] = value  # it was valid when saved: no need to re-validate
        if not was_set:
            section.model_fields_set.discard(name)
