"""Starting a process worker's child: a fresh interpreter (``spawn``), a fork, or a fork of
our fork server; plus the shared control page and how a child's exit is described.

``spawn`` runs a tiny bootstrap (``python -u -c ...``) with the parent's ``sys.path``; the
user's script is never re-run, so scripts without a ``__main__`` guard, ``python -c`` and
notebooks work.
"""

from __future__ import annotations

import mmap
import os
import signal
import subprocess
import sys
import time
from typing import Any

from . import process_child as child

BOOTSTRAP = """\
import sys, importlib.util as u
sys.path[:] = {path!r}
s = u.spec_from_file_location("concurry", {init!r}, submodule_search_locations=[{package!r}])
m = u.module_from_spec(s)
sys.modules["concurry"] = m
s.loader.exec_module(m)
"""
# The child imports the very ``concurry`` package the parent runs (not whichever one its
# ``sys.path`` finds first). The package's ``__init__`` is cheap: pydantic (for the
# configuration) loads only on first use.
_WORKER_MAIN = "from concurry.backends.process_child import main\nmain({fd}, {control}, {ppid})"


def start_interpreter(main: str, values: dict, pass_fds: tuple) -> subprocess.Popen:
    """A fresh interpreter with our ``sys.path`` running ``main`` (formatted with ``values``)."""
    package = _package_dir()
    code = BOOTSTRAP.format(path=list(sys.path), init=os.path.join(package, "__init__.py"), package=package)
    code += main.format(**values)
    return subprocess.Popen(
        [sys.executable, *subprocess._args_from_interpreter_flags(), "-u", "-c", code],
        pass_fds=pass_fds,
        close_fds=True,
        stdin=subprocess.DEVNULL,
    )


def _package_dir() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def control_page() -> tuple[int, mmap.mmap]:
    """A shared 16-byte page (see ``process_child``): an anonymous file both processes map."""
    try:
        fd = os.memfd_create("concurry-control")
    except (AttributeError, OSError):
        import tempfile

        with tempfile.TemporaryFile() as file:
            fd = os.dup(file.fileno())
    os.ftruncate(fd, child._CONTROL_SIZE)
    return fd, mmap.mmap(fd, child._CONTROL_SIZE)


class Forked:
    """The part of ``Popen`` we use, for a child made with ``os.fork``."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0005
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(["fork"], timeout or 0)
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
        return self.returncode  # type: ignore[return-value]

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def describe_exit(code: int | None) -> str:
    if code is None:
        return "closed its pipe"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def start_child(method: str, fd: int, control_fd: int) -> Any:
    """Start a child serving the socket ``fd``; returns a ``Popen``-like handle (``pid``, ``poll``,
    ``wait``, ``kill``). The caller closes its copies of ``fd`` and ``control_fd`` afterwards."""
    if method == "fork":
        return _fork(fd, control_fd)
    if method == "forkserver":
        from . import forkserver

        return forkserver.get_server(start_interpreter).fork(fd, control_fd)
    values = {"fd": fd, "control": control_fd, "ppid": os.getpid()}
    return start_interpreter(_WORKER_MAIN, values, (fd, control_fd))


def _fork(fd: int, control_fd: int) -> Forked:
    child._flush_std_streams()
    keep = {0, 1, 2, fd, control_fd}
    ppid = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: drop every other descriptor (other workers' pipes), then serve
        code = 0
        try:
            child.close_fds_except(keep)
            child.serve(fd, control_fd, ppid)
        except BaseException:
            code = 1
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    return Forked(pid)
