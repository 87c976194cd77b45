# Seed 000 (Workers), "TaskWorker: For Simple Functions": verbatim, plus added lines at the end
# that read the result and stop the worker.
from concurry import TaskWorker

def heavy_computation(x):
    return x ** x

# Create a generic executor
w = TaskWorker.options(mode="process").init()

# Submit arbitrary functions
future = w.submit(heavy_computation, 100)

print(f"digits={len(str(future.result()))}")  # added for the test
w.stop()  # added for the test
