# @worker on a morphic.Typed class with a morphic.validate method.
import json
import os

# The test harness picks the mode, start method and pool size (default: one spawned process).
OPTIONS = json.loads(os.environ.get("CONCURRY_SCRIPT_OPTIONS", "{\"mode\": \"process\"}"))
PARENT = os.getpid()

from morphic import Typed, validate
from pydantic import Field

from concurry import worker


@worker
class RobustWorker(Typed):
    api_key: str = Field(min_length=10)
    retries: int = Field(default=3, ge=0)

    @validate
    def attempts(self, extra: int) -> int:
        return self.retries + extra


w = RobustWorker.options(**OPTIONS).init(api_key="secret_key_123", retries="4")
print(f"attempts={w.attempts('1').result()!r}")
w.stop()
