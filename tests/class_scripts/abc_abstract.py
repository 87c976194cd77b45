# An abc.ABC base with an abstractmethod; the worker implements it with a validated method.
import json
import os

# The test harness picks the mode, start method and pool size (default: one spawned process).
OPTIONS = json.loads(os.environ.get("CONCURRY_SCRIPT_OPTIONS", "{\"mode\": \"process\"}"))
PARENT = os.getpid()

import abc

from pydantic import validate_call

from concurry import worker


class Shape(abc.ABC):
    @abc.abstractmethod
    def area(self, scale: int) -> float: ...

    def describe(self, scale):
        return f"{type(self).__name__} area {self.area(scale)}"


@worker
class Square(Shape):
    def __init__(self, side: float):
        self.side = side

    @validate_call
    def area(self, scale: int) -> float:
        return self.side * self.side * scale

    def checks(self):
        return isinstance(self, Shape), Square.__abstractmethods__ == frozenset()


w = Square.options(**OPTIONS).init(3)
print(f"describe={w.describe('2').result()!r}")
print(f"checks={w.checks().result()!r}")
w.stop()
