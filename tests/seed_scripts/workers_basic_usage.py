# Seed 000 (Workers), "Basic Usage": verbatim.
from concurry import worker
import os

@worker(mode="process")
class IdentityWorker:
    def __init__(self, name: str):
        self.name = name

    def who_am_i(self) -> str:
        # Return process ID to prove isolation
        return f"I am {self.name} running in PID {os.getpid()}"

# Initialize the worker (starts the background process)
w = IdentityWorker.init(name="Worker-1")

# Call method (returns a Future)
future = w.who_am_i()

# Get result
print(future.result())

# Cleanup
w.stop()
