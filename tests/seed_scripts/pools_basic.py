from concurry import worker

@worker(mode="process")
class CPUWorker:
    def compute(self, x):
        return x * x

# Create a pool of 4 processes
pool = CPUWorker.options(
    max_workers=4
).init()

# Submit 100 tasks
# Concurry automatically distributes these 100 tasks across the 4 workers
futures = [pool.compute(i) for i in range(100)]

results = [f.result() for f in futures]
pool.stop()
