"""Creating a process worker's child: a fresh interpreter (``spawn``) or a fork; the routine a
forked child runs (shared by ``fork`` and the fork server, which forks from its own process);
the thread children are created from; and how a child's exit is described.

``spawn`` runs a tiny bootstrap (``python -u -c ...``) with the parent's ``sys.path``; the
user's script is never re-run, so scripts without a ``__main__`` guard, ``python -c`` and
notebooks work.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn

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
    return in_lasting_thread(
        subprocess.Popen,
        [sys.executable, *subprocess._args_from_interpreter_flags(), "-u", "-c", code],
        pass_fds=pass_fds,
        close_fds=True,
        stdin=subprocess.DEVNULL,
    )


# ---- a thread that outlives the children it creates ----
# Linux's parent-death signal (see ``process_child.die_with_parent``) fires when the *thread*
# that created the child exits, not the process: a worker started from a pool's or the user's
# short-lived thread would be killed with it. Children are therefore created from the main
# thread, or from one daemon launcher thread that lives while any child it created lives (so
# once every worker is stopped and reaped, no thread of ours is left either).

_launch_lock = threading.Lock()
_launch_queue: queue.SimpleQueue | None = None
_launcher: threading.Thread | None = None
_launched = 0  # children the launcher created that are not reaped yet


def in_lasting_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` (which creates a child and returns its process object) run on a
    thread that outlives that child; call ``child_reaped(process)`` once it is reaped."""
    if threading.current_thread() is threading.main_thread():
        return fn(*args, **kwargs)
    global _launch_queue, _launcher, _launched
    with _launch_lock:
        if _launch_queue is None:
            _launch_queue = queue.SimpleQueue()
            _launcher = threading.Thread(target=_launch, args=(_launch_queue,), name="concurry-launcher")
            _launcher.daemon = True
            _launcher.start()
        requests = _launch_queue
        _launched += 1  # before the request: the launcher cannot be retired while it is served
    done: queue.SimpleQueue = queue.SimpleQueue()
    requests.put((fn, args, kwargs, done))
    ok, value = done.get()
    if ok:
        value.concurry_launched = True
        return value
    child_reaped(None, launched=True)
    raise value


def child_reaped(process: Any, launched: bool = False) -> None:
    """A child is reaped: the launcher that created it retires once it has none left."""
    global _launch_queue, _launcher, _launched
    with _launch_lock:
        if not launched:
            if not getattr(process, "concurry_launched", False):
                return
            process.concurry_launched = False  # counted once, whoever reaps it first
        _launched -= 1
        if _launched or _launch_queue is None:
            return
        requests, launcher = _launch_queue, _launcher
        _launch_queue = _launcher = None
    requests.put(None)
    if launcher is not None and launcher is not threading.current_thread():
        launcher.join()


def _launch(requests: queue.SimpleQueue) -> None:
    while True:
        request = requests.get()
        if request is None:
            return
        fn, args, kwargs, done = request
        try:
            done.put((True, fn(*args, **kwargs)))
        except BaseException as exc:
            done.put((False, exc))
        del fn, args, kwargs, done, request


def _forget_launcher_after_fork() -> None:
    global _launch_queue, _launch_lock, _launcher, _launched
    _launch_queue, _launch_lock, _launcher, _launched = None, threading.Lock(), None, 0


os.register_at_fork(after_in_child=_forget_launcher_after_fork)


def _package_dir() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def spawn_child(fd: int, control_fd: int) -> subprocess.Popen:
    """A fresh interpreter serving the socket ``fd`` (``mp_context="spawn"``)."""
    values = {"fd": fd, "control": control_fd, "ppid": os.getpid()}
    return start_interpreter(_WORKER_MAIN, values, (fd, control_fd))


def fork_child(fd: int, control_fd: int) -> Forked:
    """A fork of this process serving the socket ``fd`` (``mp_context="fork"``)."""
    return in_lasting_thread(_fork, fd, control_fd)


def _fork(fd: int, control_fd: int) -> Forked:
    child._flush_std_streams()
    ppid = os.getpid()
    pid = os.fork()
    if pid == 0:
        run_forked_child(fd, control_fd, ppid)
    return Forked(pid)


def run_forked_child(fd: int, control_fd: int, parent_pid: int) -> NoReturn:
    """The whole life of a freshly forked worker child; never returns.

    Drops every descriptor but the standard streams, the socket ``fd`` and the control page
    (a fork inherits other workers' pipes, which must close when those workers stop), serves
    until stop, then exits without running the parent's exit handlers or other threads' code.
    """
    code = 0
    try:
        child.close_fds_except({0, 1, 2, fd, control_fd})
        child.serve(fd, control_fd, parent_pid)
    except BaseException:
        code = 1
        import traceback

        traceback.print_exc()
    finally:
        child._flush_std_streams()
        os._exit(code)
