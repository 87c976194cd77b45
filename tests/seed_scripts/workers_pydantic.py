# Seed 000 (Workers), "Validation & Type Safety", Option 2 (pydantic.BaseModel): verbatim.
# The worker is never stopped: interpreter exit must not hang or leave a process behind.
from concurry import worker
from pydantic import BaseModel

@worker(mode="process")
class PydanticWorker(BaseModel):
    name: str
    score: float

w = PydanticWorker.init(name="AI", score=0.99)
