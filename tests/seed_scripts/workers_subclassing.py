# Seed 000 (Workers), "Manual Subclassing (Advanced)": verbatim, plus added lines at the end
# that call the method and stop the worker.
from concurry import Worker

# Legacy style: Explicit inheritance
class LegacyWorker(Worker):
    def run(self):
        return "Done"

# Usage is identical
w = LegacyWorker.options(mode="thread").init()

print(w.run().result())  # added for the test
w.stop()  # added for the test
