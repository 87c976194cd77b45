pool = MyWorker.options(
    mode="thread",
    max_workers=5,
    max_queued_tasks=10  # Each worker holds max 10 active tasks in backend
).init()
