"""Process mode from scripts and the command line (SPEC §3): no __main__ guard needed, python -c,
importable modules, interpreter exit and a killed parent leave no process behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import process_alive, wait_until
from test_process import (
    SCRIPT_TIMEOUT,
)

# ---- scripts, python -c, exit, orphan-freedom ----


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT, cwd=cwd, env=_env())


SCRIPT = textwrap.dedent(
    """
    import os
    from concurry import worker, task, TaskWorker
    print("script body ran", flush=True)

    @worker(mode="process")
    class Greeter:
        def __init__(self, name):
            self.name = name
        def greet(self):
            return f"hi {self.name} from {os.getpid() != PARENT}"

    PARENT = os.getpid()
    g = Greeter.init("x")
    print(g.greet().result())
    g.stop()
    tw = TaskWorker.options(mode="process").init()
    offset = 5
    print("task", tw.submit(lambda v: v + offset, 1).result())
    tw.stop()
    """
)


@pytest.mark.parametrize("method", ["spawn", "forkserver", "fork"])
def test_script_without_main_guard_is_not_rerun(tmp_path, method):
    path = tmp_path / "unguarded.py"
    path.write_text(SCRIPT.replace('mode="process"', f'mode="process", mp_context="{method}"'))
    proc = _run([sys.executable, str(path)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("script body ran") == 1
    assert "hi x from True" in proc.stdout
    assert "task 6" in proc.stdout


def test_classes_defined_in_python_c(tmp_path):
    proc = _run([sys.executable, "-c", SCRIPT], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("script body ran") == 1
    assert "hi x from True" in proc.stdout


def test_worker_classes_from_an_importable_module(tmp_path):
    """A class from an importable module goes by reference: the child imports that module,
    whose own ``from concurry import worker, task`` must give the decorators, as in the parent."""
    (tmp_path / "shapes.py").write_text(textwrap.dedent(
        """
        import os
        from concurry import worker  # first: the name of a submodule too
        from concurry import Worker, task

        @worker(mode="process")
        class Square:
            def area(self, side):
                return side * side, os.getpid()

        class Cube(Worker):
            def volume(self, side):
                return side ** 3

        @task(mode="process")
        def double(x):
            return 2 * x

        class Echo:
            def echo(self, value):
                return value

        EchoWorker = worker(Echo)
        """
    ))
    main = textwrap.dedent(
        """
        import os
        from shapes import Cube, EchoWorker, Square, double
        e = EchoWorker.options(mode="process").init()
        print("echo", e.echo(b"x" * 100_000).result() == b"x" * 100_000)
        e.stop()
        s = Square.init()
        area, pid = s.area(3).result()
        print("area", area, pid != os.getpid())
        c = Cube.options(mode="process").init()
        print("volume", c.volume(2).result())
        print("double", double(21).result())
        s.stop(); c.stop(); double.stop()
        """
    )
    proc = _run([sys.executable, "-c", main], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "area 9 True" in proc.stdout
    assert "volume 8" in proc.stdout
    assert "double 42" in proc.stdout
    assert "echo True" in proc.stdout


def test_interpreter_exit_with_running_worker_leaves_no_child(tmp_path):
    code = textwrap.dedent(
        """
        import os
        from concurry import worker
        @worker(mode="process")
        class W:
            def pid(self):
                return os.getpid()
        w = W.init()
        print(w.pid().result(), flush=True)
        """
    )
    proc = _run([sys.executable, "-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    pid = int(proc.stdout.split()[-1])
    assert wait_until(lambda: not process_alive(pid), timeout=10)


@pytest.mark.parametrize(("busy", "method"), [(False, "spawn"), (True, "spawn"), (True, "forkserver")])
def test_killed_parent_leaves_no_orphans(tmp_path, busy, method):
    code = textwrap.dedent(
        f"""
        import os, time
        from concurry import worker
        @worker(mode="process", mp_context="{method}")
        class W:
            def pid(self):
                return os.getpid()
            def sleep(self):
                time.sleep(60)
        w = W.init()
        print(w.pid().result(), flush=True)
        if {busy}:
            w.sleep()
        time.sleep(60)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=tmp_path, env=_env()
    )
    try:
        pid = int(parent.stdout.readline())
        assert process_alive(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_until(lambda: not process_alive(pid), timeout=10)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()


NESTED_SCRIPT = textwrap.dedent(
    """
    import dataclasses, os
    import pydantic
    from concurry import worker

    @dataclasses.dataclass
    class Point:
        x: int

    class Model(pydantic.BaseModel):
        a: int

    @worker(mode="process")
    class Inner:
        def where(self):
            return os.getpid()

    @worker(mode="process")
    class Outer:
        def __init__(self):
            self.inner = Inner.init()
        def pids(self):
            return os.getpid(), self.inner.where().result()
        def move(self, p):
            return Point(p.x + 1)
        def build(self, model_cls):
            return model_cls(a="3")
        def stop(self):
            self.inner.stop()

    o = Outer.init()
    outer_pid, inner_pid = o.pids().result()
    print("distinct", len({os.getpid(), outer_pid, inner_pid}) == 3)
    moved = o.move(Point(1)).result()
    print("point", isinstance(moved, Point), moved.x)
    built = o.build(Model).result()
    print("model", isinstance(built, Model), built.a)
    o.stop()

    @worker(mode="thread")
    class Owner:
        def __init__(self):
            self.inner = Inner.init()
        def where(self):
            return self.inner.where()
        def stop(self):
            self.inner.stop()

    t = Owner.init()
    print("thread owns process", t.where().result().result() != os.getpid())
    t.stop()
    """
)


def test_nesting_and_main_objects_round_trip(tmp_path):
    path = tmp_path / "nested.py"
    path.write_text(NESTED_SCRIPT)
    proc = _run([sys.executable, str(path)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for line in ["distinct True", "point True 2", "model True 3", "thread owns process True"]:
        assert line in proc.stdout, proc.stdout + proc.stderr
