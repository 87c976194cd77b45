"""The limit objects a user writes: ``RateLimit``, ``CallLimit``, ``ResourceLimit``.

They are plain, immutable descriptions (picklable, comparable); the state that enforces them
lives in a ``LimitSet``'s store, so one description can serve a thread-local set and a set
shared by processes alike.
"""

from __future__ import annotations

import math
from typing import Any

from ..constants import RateLimitAlgorithm

CALL_KEY = "call_count"  # the key of a CallLimit: one unit per method call


def _positive(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{owner} {name} must be a positive number, got {value!r}")
    if value <= 0:
        raise ValueError(f"{owner} {name} must be > 0, got {value!r}")
    return value


def _key(owner: str, key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise TypeError(f"{owner} key must be a non-empty str, got {key!r}")
    return key


class Limit:
    """What every limit has: a ``key`` (the name requests use) and a ``capacity``."""

    __slots__ = ("capacity", "key")
    key: str
    capacity: float

    def _fields(self) -> tuple:
        return tuple(getattr(self, name) for name in self._field_names())

    def _field_names(self) -> tuple[str, ...]:
        return ("key", "capacity")

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._fields() == self._fields()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self._fields()))

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._field_names())
        return f"{type(self).__name__}({args})"

    def __reduce__(self) -> tuple:
        return (_rebuild, (type(self), {n: getattr(self, n) for n in self._field_names()}))


def _rebuild(cls: type, fields: dict) -> Limit:
    obj: Limit = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(obj, name, value)
    return obj


class RateLimit(Limit):
    """At most ``capacity`` units of ``key`` per ``window`` seconds.

    ``algorithm``: ``token_bucket`` (bursts up to capacity, refills steadily), ``leaky_bucket``
    (no bursts: grants are spaced evenly at the rate), ``gcra`` (token-bucket behaviour with one
    number of state), ``fixed_window`` (capacity per aligned window), ``sliding_window`` (capacity
    in every window of that length, exactly)."""

    __slots__ = ("algorithm", "window")
    window: float
    algorithm: RateLimitAlgorithm

    def __init__(
        self,
        key: str,
        capacity: float,
        window: float,
        algorithm: RateLimitAlgorithm | str = RateLimitAlgorithm.TOKEN_BUCKET,
    ) -> None:
        owner = type(self).__name__
        object.__setattr__(self, "key", _key(owner, key))
        object.__setattr__(self, "capacity", _positive(owner, "capacity", capacity))
        object.__setattr__(self, "window", _positive(owner, "window", window))
        object.__setattr__(self, "algorithm", RateLimitAlgorithm.parse(algorithm, f"{owner} algorithm"))

    def _field_names(self) -> tuple[str, ...]:
        return ("key", "capacity", "window", "algorithm")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; make a new one")


class CallLimit(RateLimit):
    """At most ``capacity`` calls per ``window`` seconds: a worker with one takes a unit for every
    method call before it runs; its key is ``"call_count"``."""

    __slots__ = ()

    def __init__(
        self,
        capacity: float,
        window: float,
        algorithm: RateLimitAlgorithm | str = RateLimitAlgorithm.TOKEN_BUCKET,
    ) -> None:
        super().__init__(CALL_KEY, capacity, window, algorithm)

    def _field_names(self) -> tuple[str, ...]:
        return ("capacity", "window", "algorithm")

    def __reduce__(self) -> tuple:
        return (CallLimit, (self.capacity, self.window, self.algorithm))


class ResourceLimit(Limit):
    """A semaphore of ``capacity`` units of ``key`` (e.g. database connections), held while
    inside the ``acquire`` block and returned when it ends (also when it raises)."""

    __slots__ = ()

    def __init__(self, key: str, capacity: int) -> None:
        owner = type(self).__name__
        object.__setattr__(self, "key", _key(owner, key))
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise TypeError(f"{owner} capacity must be a positive int (a number of units), got {capacity!r}")
        object.__setattr__(self, "capacity", _positive(owner, "capacity", capacity))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; make a new one")
