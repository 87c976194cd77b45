# A dataclass worker class whose method is decorated with morphic.validate.
import json
import os

# The test harness picks the mode, start method and pool size (default: one spawned process).
OPTIONS = json.loads(os.environ.get("CONCURRY_SCRIPT_OPTIONS", "{\"mode\": \"process\"}"))
PARENT = os.getpid()

import dataclasses

from morphic import validate

from concurry import worker


@worker
@dataclasses.dataclass
class Accumulator:
    start: int
    step: int = 1
    seen: list = dataclasses.field(default_factory=list)

    @validate
    def add(self, value: int) -> int:
        self.seen.append(value)
        return self.start + self.step * sum(self.seen)

    def fields(self):
        return [f.name for f in dataclasses.fields(self)]


w = Accumulator.options(**OPTIONS).init(start=10, step=2)
print(f"add={w.add('1').result()!r}")
print(f"fields={w.fields().result()!r}")
w.stop()
