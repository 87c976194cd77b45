# Seed 000 (Workers), "Composition: Workers within Workers": the classes verbatim. The snippet
# defines them but never uses them, and DatabaseWorker.query's body is `...` (returns None);
# the smallest completion is the usage block at the end, marked "added".
from concurry import worker

@worker(mode="thread")
class DatabaseWorker:
    def query(self, sql): ...

@worker(mode="thread")
class APIWorker:
    def __init__(self):
        # This worker owns a private database worker
        self.db = DatabaseWorker.init()

    def process_request(self, user_id):
        # Delegate to internal worker
        # Future unwrapping handles the result automatically!
        user_data = self.db.query(f"SELECT * FROM users WHERE id={user_id}")
        return f"Processed {user_data.result()}"

    def stop(self):
        # Clean up child worker
        self.db.stop()

# ---- added: use the workers ----
import threading

api = APIWorker.init()
print(api.process_request(42).result())
api.stop()
left = [t.name for t in threading.enumerate() if t.name.startswith("concurry")]
print(f"threads left: {left}")
