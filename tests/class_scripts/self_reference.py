# Class attributes that refer to the worker class itself, and a validated method using them.
import json
import os

# The test harness picks the mode, start method and pool size (default: one spawned process).
OPTIONS = json.loads(os.environ.get("CONCURRY_SCRIPT_OPTIONS", "{\"mode\": \"process\"}"))
PARENT = os.getpid()

from pydantic import validate_call

from concurry import worker


@worker
class Registry:
    @validate_call
    def lookup(self, key: str) -> str:
        return f"{key}:{Registry.by_name[key].__name__}"

    def identity(self):
        return Registry.by_name["Registry"] is Registry, isinstance(self, Registry.me)


Registry.me = Registry
Registry.by_name = {"Registry": Registry}

w = Registry.options(**OPTIONS).init()
print(f"lookup={w.lookup('Registry').result()!r}")
print(f"identity={w.identity().result()!r}")
w.stop()
