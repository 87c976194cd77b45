# A method decorated with morphic.validate, in a worker class of an unguarded script.
import json
import os

# The test harness picks the mode, start method and pool size (default: one spawned process).
OPTIONS = json.loads(os.environ.get("CONCURRY_SCRIPT_OPTIONS", "{\"mode\": \"process\"}"))
PARENT = os.getpid()

from morphic import validate

from concurry import worker


@worker
class SimpleWorker:
    @validate
    def calculate(self, x: int, y: int) -> int:
        return x + y

    def pid(self):
        return os.getpid()


w = SimpleWorker.options(**OPTIONS).init()
print(f"result={w.calculate('5', '10').result()!r}")
print(f"elsewhere={w.pid().result() != PARENT}")
w.stop()
