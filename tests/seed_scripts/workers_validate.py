# Seed 000 (Workers), "Validation & Type Safety", Option 3 (@validate): verbatim, plus one
# added line at the end so the test can see the result.
from concurry import worker
from morphic import validate

@worker(mode="thread")
class SimpleWorker:
    @validate
    def calculate(self, x: int, y: int) -> int:
        return x + y

w = SimpleWorker.init()
# Strings automatically coerced to int!
result = w.calculate("5", "10").result()  # Returns 15

print(f"result={result!r}")  # added for the test
