"""Enumerations of the option values the library accepts, each with its spelled-out aliases.

Every enum parses case-insensitively from its value, its name or an alias, and rejects anything
else with a ``ValueError`` naming the accepted spellings.
"""

from __future__ import annotations

from enum import Enum
from typing import ClassVar


class _ParsableEnum(str, Enum):
    """A string enum with ``parse()``: members, values, names and aliases, any case."""

    _aliases_: ClassVar[dict[str, str]]

    @classmethod
    def parse(cls, value: object, option: str | None = None):
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            key = value.strip().lower().replace("-", "_")
            key = cls._aliases().get(key, key)
            for member in cls:
                if member.value == key:
                    return member
        what = option or cls.__name__
        accepted = ", ".join(repr(m.value) for m in cls)
        aliases = ", ".join(repr(a) for a in cls._aliases())
        raise ValueError(
            f"{what}={value!r} is not accepted; use one of {accepted}"
            + (f" (aliases: {aliases})" if aliases else "")
            + f" or {'an' if cls.__name__[0] in 'AEIOU' else 'a'} {cls.__name__} member"
        )

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return getattr(cls, "_alias_map", {})

    def __str__(self) -> str:
        return self.value


def _with_aliases(enum_cls, aliases: dict[str, str]):
    enum_cls._alias_map = aliases
    return enum_cls


class ExecutionMode(_ParsableEnum):
    """Where a worker runs."""

    SYNC = "sync"
    THREAD = "thread"
    ASYNCIO = "asyncio"
    PROCESS = "process"
    RAY = "ray"


_with_aliases(
    ExecutionMode,
    {
        "synchronous": "sync",
        "threads": "thread",
        "threading": "thread",
        "async": "asyncio",
        "async_io": "asyncio",
        "proc": "process",
        "processes": "process",
        "multiprocessing": "process",
        "mp": "process",
    },
)


class LoadBalancingAlgorithm(_ParsableEnum):
    """How a pool picks the worker for the next call."""

    ROUND_ROBIN = "round_robin"
    ACTIVE = "active"
    TOTAL = "total"
    RANDOM = "random"


_with_aliases(
    LoadBalancingAlgorithm,
    {"rr": "round_robin", "roundrobin": "round_robin", "least_active": "active",
     "least_total": "total", "rand": "random"},
)


class RateLimitAlgorithm(_ParsableEnum):
    """Rate-limiting algorithms of ``RateLimit``."""

    TOKEN_BUCKET = "token_bucket"
    LEAKY_BUCKET = "leaky_bucket"
    SLIDING_WINDOW = "sliding_window"
    FIXED_WINDOW = "fixed_window"
    GCRA = "gcra"


class RetryAlgorithm(_ParsableEnum):
    """Back-off schedules for retries."""

    EXPONENTIAL = "exponential"
    LINEAR = "linear"
    FIXED = "fixed"
    FIBONACCI = "fibonacci"


_with_aliases(RetryAlgorithm, {"exp": "exponential", "constant": "fixed", "fib": "fibonacci"})


class PollingAlgorithm(_ParsableEnum):
    """How remote (Ray) futures are polled while waiting."""

    FIXED = "fixed"
    ADAPTIVE = "adaptive"
    EXPONENTIAL = "exponential"
    PROGRESSIVE = "progressive"


class ReturnWhen(_ParsableEnum):
    """When ``wait`` returns."""

    ALL_COMPLETED = "all_completed"
    FIRST_COMPLETED = "first_completed"
    FIRST_EXCEPTION = "first_exception"


_with_aliases(
    ReturnWhen, {"all": "all_completed", "first": "first_completed", "exception": "first_exception"}
)

ALL_COMPLETED = ReturnWhen.ALL_COMPLETED
FIRST_COMPLETED = ReturnWhen.FIRST_COMPLETED
FIRST_EXCEPTION = ReturnWhen.FIRST_EXCEPTION
