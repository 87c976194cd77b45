# Methods decorated with pydantic.validate_call (plain and with a config), in an unguarded script.
import json
import os

# The test harness picks the mode, start method and pool size (default: one spawned process).
OPTIONS = json.loads(os.environ.get("CONCURRY_SCRIPT_OPTIONS", "{\"mode\": \"process\"}"))
PARENT = os.getpid()

from pydantic import ValidationError, validate_call

from concurry import TaskWorker, worker


@worker
class Calculator:
    @validate_call
    def add(self, x: int, y: int) -> int:
        return x + y

    @validate_call(config={"strict": True}, validate_return=True)
    def strict_add(self, x: int, y: int) -> int:
        return x + y


w = Calculator.options(**OPTIONS).init()
print(f"result={w.add('5', '10').result()!r}")
try:
    w.strict_add("5", 10).result()
except ValidationError as exc:
    print(f"strict refused: {exc.error_count()} error")
w.stop()


@validate_call
def multiply(x: int, y: int) -> int:
    return x * y


# A validated script function given to a TaskWorker travels the same way as a class.
tasks = TaskWorker.options(**OPTIONS).init()
print(f"task={tasks.submit(multiply, '6', '7').result()!r}")
tasks.stop()
