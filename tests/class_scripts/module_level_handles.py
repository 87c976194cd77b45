# Methods referring to a module-level worker handle, a builder and a @task function; a
# validated method; and a handle of another worker created before the process worker.
import json
import os

# The test harness picks the mode, start method and pool size (default: one spawned process).
OPTIONS = json.loads(os.environ.get("CONCURRY_SCRIPT_OPTIONS", "{\"mode\": \"process\"}"))
PARENT = os.getpid()

from morphic import validate

from concurry import task, worker


@worker(mode="thread")
class Helper:
    def where(self):
        return os.getpid()


helper = Helper.init()  # a live handle in the script's globals, with its locks and threads
fast_helper = Helper.options(mode="sync")  # a builder


@task(mode="thread")
def plus_one(x):
    return x + 1


@worker
class Client:
    @validate
    def via_handle(self, x: int):
        return helper.where().result()

    def via_builder(self):
        local = fast_helper.init()
        try:
            return local.where().result() != PARENT
        finally:
            local.stop()

    def via_task(self, x):
        return plus_one(x).result()


w = Client.options(**OPTIONS).init()
print(f"builder={w.via_builder().result()!r}")
print(f"task={w.via_task(1).result()!r}")
try:
    w.via_handle("1").result()
except RuntimeError as exc:
    print(f"handle refused: {exc}")
print(f"still serving={w.via_task(2).result()!r}")
w.stop()
helper.stop()
plus_one.stop()
