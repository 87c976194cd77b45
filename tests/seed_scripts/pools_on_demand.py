# Use @worker(mode="process") or override in options
pool = MyWorker.options(
    mode="process",
    on_demand=True,  # Workers created JIT
    max_workers=10   # Max concurrent workers
).init()
