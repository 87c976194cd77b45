"""Failures in a process worker show where the user's code failed, as a user sees them.

A script (classes in ``__main__``, so they travel by value; no ``__main__`` guard) makes its
workers fail and prints each exception with ``traceback.print_exception``. The worker-side
traceback must show the script's (and an importable module's) file names, line numbers and
source lines, and none of the library's own loop; errors about what cannot be pickled name the
user's method or function, not ``TaskWorker.submit``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
MARKER = "--- traceback in the worker process ---"
LIBRARY_FRAMES = ("process_child.py", "runtime.py", "task.py", "<dynamic-code>")

MODULE = """
class ModWorker:
    def compute(self, x):
        y = x * 2
        raise ValueError(f"module failure {y}")
"""

SCRIPT = """
import linecache
import os
import threading
import traceback

from concurry import TaskWorker, task, worker
from helpermod import ModWorker

OPTIONS = {"mode": "process", "mp_context": os.environ["TRACE_CONTEXT"]}
LOCK = threading.Lock()


class MyWorker:
    def compute(self, x):
        y = x + 1
        return helper(y)

    def give(self):
        return threading.Lock()

    async def compute_async(self, x):
        raise ValueError(f"async failure {x}")


class Broken:
    def __init__(self):
        raise LookupError("cannot build")

    def ping(self):
        return 1


def helper(y):
    raise ValueError(f"bad value {y}")


def plain(x):
    raise KeyError(x)


def holds_lock(x):
    return LOCK, x


def returns_lock(x):
    return threading.Lock()


@task(**OPTIONS)
def my_task(x):
    raise RuntimeError(f"task failure {x}")


CELL = "/nonexistent-notebook/cell_1.py"
CELL_SOURCE = (
    'class CellWorker:\\n    def compute(self, x):\\n        raise ValueError(f"cell failure {x}")\\n'
)
# As IPython does for a notebook cell: its source is only in this process's linecache.
linecache.cache[CELL] = (len(CELL_SOURCE), None, CELL_SOURCE.splitlines(True), CELL)
exec(compile(CELL_SOURCE, CELL, "exec"))


def show(title, fn):
    print(f"##### {title}", flush=True)
    try:
        fn()
    except BaseException as exc:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=__import__("sys").stdout)


h = worker(MyWorker).options(**OPTIONS).init()
show("main class", lambda: h.compute(1).result())
show("async method", lambda: h.compute_async(6).result())
show("unpicklable argument", lambda: h.compute(threading.Lock()).result())
show("unpicklable result", lambda: h.give().result())
h.stop()
hc = worker(CellWorker).options(**OPTIONS).init()
show("cell class", lambda: hc.compute(5).result())
hc.stop()
hm = worker(ModWorker).options(**OPTIONS).init()
show("module class", lambda: hm.compute(2).result())
hm.stop()
show("constructor", lambda: worker(Broken).options(**OPTIONS).init().ping().result())
show("task", lambda: my_task(3).result())
show("task unpicklable argument", lambda: my_task(threading.Lock()).result())
my_task.stop()
tw = TaskWorker.options(**OPTIONS).init()
show("submit", lambda: tw.submit(plain, 4).result())
show("submit unpicklable argument", lambda: tw.submit(plain, threading.Lock()).result())
show("submit unpicklable function", lambda: tw.submit(holds_lock, 1).result())
show("submit unpicklable result", lambda: tw.submit(returns_lock, 1).result())
tw.stop()
print("##### end", flush=True)
"""


def _run(tmp_path: Path, context: str) -> tuple[Path, dict[str, str]]:
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    (tmp_path / "helpermod.py").write_text(MODULE)
    env = dict(os.environ, TRACE_CONTEXT=context)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(tmp_path), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=100
    )
    assert done.returncode == 0 and "##### end" in done.stdout, done.stdout + done.stderr
    sections = re.split(r"^##### (.*)\n", done.stdout, flags=re.M)[1:]
    return script, dict(zip(sections[::2], sections[1::2], strict=True))


def _worker_side(text: str) -> str:
    """The worker-side traceback: a note after the exception (3.11+), or the chained cause
    printed before it (3.10)."""
    assert MARKER in text, text
    part = text.split(MARKER, 1)[1]
    return part.split("The above exception was the direct cause", 1)[0]


def _line_of(path: Path, source: str) -> int:
    return path.read_text().splitlines().index(source) + 1


def _assert_frame(part: str, path: Path, function: str, source: str) -> None:
    """``part`` shows ``function``'s frame at ``source``'s line of ``path``, with its text."""
    line = _line_of(path, source)
    frame = f'  File "{path}", line {line}, in {function}\n    {source.strip()}\n'
    assert frame in part, f"missing:\n{frame}\nin:\n{part}"


def _assert_no_library_frames(part: str) -> None:
    for name in LIBRARY_FRAMES:
        assert name not in part, f"{name} in the worker-side traceback:\n{part}"


@pytest.fixture(scope="module")
def spawned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    return _run(tmp_path_factory.mktemp("spawn"), "spawn")


@pytest.mark.timeout(120)
def test_script_class_shows_script_lines(spawned: tuple[Path, dict[str, str]]) -> None:
    script, out = spawned
    part = _worker_side(out["main class"])
    _assert_frame(part, script, "compute", "        return helper(y)")
    _assert_frame(part, script, "helper", '    raise ValueError(f"bad value {y}")')
    _assert_no_library_frames(part)
    assert part.split("Traceback (most recent call last):\n", 1)[1].startswith(f'  File "{script}"'), part
    assert "ValueError: bad value 2" in out["main class"]


@pytest.mark.timeout(120)
def test_module_class_shows_module_lines(spawned: tuple[Path, dict[str, str]]) -> None:
    script, out = spawned
    part = _worker_side(out["module class"])
    _assert_frame(
        part, script.parent / "helpermod.py", "compute", '        raise ValueError(f"module failure {y}")'
    )
    _assert_no_library_frames(part)


@pytest.mark.timeout(120)
def test_source_only_the_caller_has_is_shown(spawned: tuple[Path, dict[str, str]]) -> None:
    """A notebook cell's class: the worker cannot read its file, the caller's linecache can."""
    _, out = spawned
    part = _worker_side(out["cell class"])
    frame = '  File "/nonexistent-notebook/cell_1.py", line 3, in compute\n'
    frame += '    raise ValueError(f"cell failure {x}")\n'
    assert frame in part, part
    _assert_no_library_frames(part)


@pytest.mark.timeout(120)
def test_constructor_failure_shows_init(spawned: tuple[Path, dict[str, str]]) -> None:
    script, out = spawned
    part = _worker_side(out["constructor"])
    _assert_frame(part, script, "__init__", '        raise LookupError("cannot build")')
    _assert_no_library_frames(part)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("case", "function", "source"),
    [
        ("task", "my_task", '    raise RuntimeError(f"task failure {x}")'),
        ("submit", "plain", "    raise KeyError(x)"),
        ("async method", "compute_async", '        raise ValueError(f"async failure {x}")'),
    ],
)
def test_functions_show_their_own_lines(
    spawned: tuple[Path, dict[str, str]], case: str, function: str, source: str
) -> None:
    script, out = spawned
    part = _worker_side(out[case])
    _assert_frame(part, script, function, source)
    _assert_no_library_frames(part)
    assert "base_events.py" not in part, part  # the loop the runtime drives a coroutine with
    assert part.split("Traceback (most recent call last):\n", 1)[1].startswith(f'  File "{script}"'), part


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("case", "message"),
    [
        (
            "unpicklable argument",
            "TypeError: MyWorker.compute: argument of type _thread.lock cannot be pickled",
        ),
        (
            "unpicklable result",
            "TypeError: MyWorker.give returned a value of type lock that cannot be pickled",
        ),
        ("task unpicklable argument", "TypeError: my_task: argument of type _thread.lock cannot be pickled"),
        ("submit unpicklable argument", "TypeError: plain: argument of type _thread.lock cannot be pickled"),
        ("submit unpicklable function", "TypeError: holds_lock: the function cannot be pickled"),
        ("submit unpicklable result", "TypeError: returns_lock returned a value of type lock that cannot be"),
    ],
)
def test_pickling_errors_name_the_users_function(
    spawned: tuple[Path, dict[str, str]], case: str, message: str
) -> None:
    _, out = spawned
    assert message in out[case], out[case]
    assert "TaskWorker.submit" not in out[case], out[case]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("context", ["fork", "forkserver"])
def test_other_start_methods_show_script_lines(tmp_path: Path, context: str) -> None:
    """Forked children (from this process or from a fork server) show the same traceback."""
    script, out = _run(tmp_path, context)
    part = _worker_side(out["main class"])
    _assert_frame(part, script, "helper", '    raise ValueError(f"bad value {y}")')
    _assert_no_library_frames(part)
    _assert_frame(_worker_side(out["task"]), script, "my_task", '    raise RuntimeError(f"task failure {x}")')


class _Failing:
    def compute(self, x: int) -> int:
        raise ValueError(f"in-process failure {x}")

    async def compute_async(self, x: int) -> int:
        raise ValueError(f"in-process failure {x}")


@pytest.mark.parametrize("mode", ["sync", "thread", "asyncio"])
@pytest.mark.parametrize("method", ["compute", "compute_async"])
def test_in_process_traceback_skips_the_backend_loop(mode: str, method: str) -> None:
    """The exception ``result()`` raises goes from the caller's frames to the method's, without
    the backend's loop or the runtime in between."""
    from concurry import worker

    handle = worker(_Failing).options(mode=mode).init()
    try:
        with pytest.raises(ValueError, match="in-process failure 1") as caught:
            getattr(handle, method)(1).result(timeout=10)
    finally:
        handle.stop()
    frames = traceback.extract_tb(caught.value.__traceback__)
    files = [Path(frame.filename).name for frame in frames]
    assert frames[-1].name == method and frames[-1].filename == __file__, files
    assert not {"sync.py", "thread.py", "asyncio.py", "runtime.py", "base_events.py"} & set(files), files


def test_code_with_constants_marshal_refuses_still_travels() -> None:
    """Code built by hand can hold constants ``marshal`` refuses; it travels as before."""
    import pickle
    import types

    from concurry.class_transport import dumps

    def source() -> object:
        return None

    code = source.__code__.replace(co_consts=(range(3),))  # returns its first constant
    fn = types.FunctionType(code, {"__name__": "__main__"})
    assert pickle.loads(dumps(fn))() == range(3)
