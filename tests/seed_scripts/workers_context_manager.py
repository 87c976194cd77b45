# Seed 000 (Workers), "Best Practices" 1 (context managers). The snippet's class body is `...`
# yet it calls w.do_work(); the smallest completion is a do_work method (marked "added").
from concurry import worker

@worker(mode="thread")
class MyWorker:
    def do_work(self):  # added: the seed calls it but does not define it
        return "work done"

with MyWorker.init() as w:
    w.do_work()
# Automatically stopped here

# ---- added: check it is stopped ----
from concurry import WorkerStoppedError

try:
    w.do_work()
except WorkerStoppedError as exc:
    print(f"stopped: {exc}")
