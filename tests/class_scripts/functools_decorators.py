# Methods wrapped by functools decorators: wraps (a user decorator), lru_cache, cache,
# cached_property, singledispatchmethod, partialmethod; and a module-level singledispatch helper.
import json
import os

# The test harness picks the mode, start method and pool size (default: one spawned process).
OPTIONS = json.loads(os.environ.get("CONCURRY_SCRIPT_OPTIONS", "{\"mode\": \"process\"}"))
PARENT = os.getpid()

import functools

from concurry import worker


def traced(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return ("traced", fn.__name__, fn(*args, **kwargs))

    return wrapper


@functools.singledispatch
def describe(value):
    return "something"


@describe.register
def _(value: int):
    return "an int"


@worker
class Decorated:
    @traced
    def double(self, x):
        return 2 * x

    @functools.lru_cache(maxsize=8)  # noqa: B019 (the cache is the point here)
    def square(self, x):
        return x * x

    @functools.cache  # noqa: B019
    def cube(self, x):
        return x**3

    @functools.cached_property
    def answer(self):
        return 42

    @functools.singledispatchmethod
    def kind(self, value):
        return "other"

    @kind.register
    def _(self, value: str):
        return "str"

    half = functools.partialmethod(square, 3)

    def everything(self):
        dispatched = (self.kind("a"), self.kind(1.0), describe(1), describe("x"))
        return (self.square(4), self.cube(2), self.answer, *dispatched)

    def wrapper_name(self):
        return type(self).double.__name__, type(self).square.cache_info().maxsize


w = Decorated.options(**OPTIONS).init()
print(f"double={w.double(4).result()!r}")
print(f"everything={w.everything().result()!r}")
print(f"half={w.half().result()!r}")
print(f"names={w.wrapper_name().result()!r}")
w.stop()
