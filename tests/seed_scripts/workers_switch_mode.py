# Seed 000 (Workers), "Switch Mode". The snippet is a fragment that uses IdentityWorker from
# "Basic Usage"; the smallest completion is that class's definition, copied verbatim above it.
from concurry import worker
import os

@worker(mode="process")
class IdentityWorker:
    def __init__(self, name: str):
        self.name = name

    def who_am_i(self) -> str:
        # Return process ID to prove isolation
        return f"I am {self.name} running in PID {os.getpid()}"

# ---- the seed snippet, verbatim ----
# This creates the new worker instead in Thread mode (instead of Process)
thread_worker = IdentityWorker.options(mode="thread").init(name="Worker-Thread")
print(thread_worker.who_am_i().result())
thread_worker.stop()
