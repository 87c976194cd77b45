"""Deliberately wrong uses: each line ending in an "E:" comment must make mypy report an error
containing the comment's text on that line, and no other line may have one (tests/test_typing.py).

These are the lies the old signatures told (a worker class "returns an instance", results are
``Any``) turned into checks. Never run; only type-checked.
"""

from concurry import BaseFuture, Executor, TaskWorker, gather, task, worker, wrap_future


@worker(mode="thread")
class Counter:
    def __init__(self, start: int = 0):
        self.count = start

    def add(self, n: int) -> int:
        self.count += n
        return self.count


@task(mode="thread")
def shout(word: str) -> str:
    return word.upper()


def wrong() -> None:
    counter: Counter = Counter(10)  # E: incompatible types in assignment (expression has type "WorkerHandle"
    Counter.init(10).stop(timeout="soon")  # E: argument "timeout" to "stop" of "WorkerHandle"
    Counter.options("thread")  # E: too many arguments for "options"
    text: str = wrap_future(1).result()  # E: incompatible types in assignment (expression has type "int"
    future: BaseFuture[int] = wrap_future("x")  # E: argument 1 to "wrap_future" has incompatible type "str"
    shout(1)  # E: argument 1 to "__call__" of "TaskFunction" has incompatible type "int"
    shout.map([1]).upper()  # E: "Iterator[str]" has no attribute "upper"
    shout.nope()  # E: "TaskFunction[[str], str]" has no attribute "nope"
    Executor(mode="thread").submit(shout.fn, 2)  # E: argument 2 to "submit"
    TaskWorker.init().shutdown(wait="yes")  # E: argument "wait" to "shutdown"
    gather({"a": 1})[0]  # E: invalid index type "int" for "dict[str, Any]"
    print(counter, text, future)
