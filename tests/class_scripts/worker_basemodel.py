# @worker on a pydantic.BaseModel with a nested model field and a validate_call method.
import json
import os

# The test harness picks the mode, start method and pool size (default: one spawned process).
OPTIONS = json.loads(os.environ.get("CONCURRY_SCRIPT_OPTIONS", "{\"mode\": \"process\"}"))
PARENT = os.getpid()

from pydantic import BaseModel, Field, validate_call

from concurry import worker


class Settings(BaseModel):
    factor: int = 3


@worker
class Scaler(BaseModel):
    name: str
    settings: Settings = Field(default_factory=Settings)

    @validate_call
    def scale(self, x: int) -> int:
        return x * self.settings.factor

    def kinds(self):
        return type(self.settings) is Settings, isinstance(self, BaseModel), list(Scaler.model_fields)


w = Scaler.options(**OPTIONS).init(name="s", settings={"factor": "4"})
print(f"scale={w.scale('5').result()!r}")
print(f"kinds={w.kinds().result()!r}")
w.stop()
