# class W(Worker, BaseModel) with a field validator and a validate_call method.
import json
import os

# The test harness picks the mode, start method and pool size (default: one spawned process).
OPTIONS = json.loads(os.environ.get("CONCURRY_SCRIPT_OPTIONS", "{\"mode\": \"process\"}"))
PARENT = os.getpid()

from pydantic import BaseModel, field_validator, validate_call

from concurry import Worker


class Greeter(Worker, BaseModel):
    name: str
    times: int = 1

    @field_validator("name")
    @classmethod
    def capitalised(cls, value):
        return value.capitalize()

    @validate_call
    def greet(self, punctuation: str, repeat: int) -> str:
        return " ".join([f"hello {self.name}{punctuation}"] * repeat * self.times)


w = Greeter.options(**OPTIONS).init(name="ada", times="1")
print(f"greet={w.greet('!', '2').result()!r}")
w.stop()
