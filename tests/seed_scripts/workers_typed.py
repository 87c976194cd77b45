# Seed 000 (Workers), "Validation & Type Safety", Option 1 (morphic.Typed): verbatim.
# The worker is never stopped: interpreter exit must not hang.
from concurry import worker
from morphic import Typed
from pydantic import Field

@worker(mode="thread")
class RobustWorker(Typed):
    # Fields are validated at initialization
    api_key: str = Field(min_length=10)
    retries: int = Field(default=3, ge=0)

    def post_initialize(self):
        print(f"Worker ready with {self.retries} retries")

# Validates inputs before spawning worker
w = RobustWorker.init(api_key="secret_key_123")
