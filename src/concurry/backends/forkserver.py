"""``mp_context="forkserver"``: a helper process, started our way, that forks workers on request.

The helper is a fresh interpreter (the same bootstrap as spawned workers, so the user's script
is never re-run) that imports the worker runtime once and then forks a child per request,
receiving the child's socket and control page with ``socket.recv_fds``. Forking a small
single-threaded helper is safe where forking the user's (threaded) process is not, and cheaper
than starting an interpreter per worker.

The helper is the children's parent: it reaps them and reports each exit code back, so the
worker backend sees a ``Popen``-like object (``_ServedProcess``) with ``wait``/``poll``/``kill``.
It exits when the parent closes its socket, or is killed by the kernel when the parent dies
(Linux's parent-death signal; a watcher thread elsewhere); its children, whose parent it is,
die with it the same way.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import struct
import subprocess
import threading

from .process_launch import Forked, child_reaped, run_forked_child, start_interpreter

_MESSAGE = struct.Struct("!qq")  # (pid, exit code), or (pid, _FORKED) answering a request
_FORKED = 1 << 40


# ---- the helper process ----


def serve(fd: int, parent_pid: int) -> None:
    """The helper's main loop (runs in the helper process)."""
    from .. import runtime  # noqa: F401 - imported once here, inherited by every fork
    from . import process_child as child

    try:
        import cloudpickle  # noqa: F401 - by-value classes need it in the children
    except ImportError:
        pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    child.die_with_parent(parent_pid)  # the helper dies with the user's process, at once
    sock = socket.socket(fileno=fd)
    lock = threading.Lock()
    live = threading.Semaphore(0)
    me = os.getpid()

    def reap() -> None:
        while True:
            live.acquire()
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                continue
            with lock:
                sock.sendall(_MESSAGE.pack(pid, os.waitstatus_to_exitcode(status)))

    threading.Thread(target=reap, name="concurry-forkserver-reaper", daemon=True).start()
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 16, 2)
        except OSError:
            break
        if not message or len(fds) != 2:
            break  # the parent closed the socket (or died)
        child_fd, control_fd = fds
        pid = os.fork()
        if pid == 0:
            run_forked_child(child_fd, control_fd, me)
        os.close(child_fd)
        os.close(control_fd)
        live.release()
        with lock:
            sock.sendall(_MESSAGE.pack(pid, _FORKED))
    os._exit(0)


# ---- the parent's side ----


class _ServedProcess(Forked):
    """A worker forked by the helper: its exit code arrives from the helper, which reaps it."""

    def __init__(self, pid: int):
        super().__init__(pid)
        self._exited = threading.Event()

    def _set_exit(self, code: int) -> None:
        self.returncode = code
        self._exited.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(["forkserver child"], timeout or 0)
        return self.returncode  # type: ignore[return-value]


class ForkServer:
    """The parent's handle on the helper process (one per parent process)."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            self.process = start_interpreter(
                "from concurry.backends.forkserver import serve\nserve({fd}, {ppid})",
                {"fd": theirs.fileno(), "ppid": os.getpid()},
                (theirs.fileno(),),
            )
        finally:
            theirs.close()
        self.sock = ours
        self.alive = True
        self._request_lock = threading.Lock()
        self._replies: queue.SimpleQueue = queue.SimpleQueue()
        self._children: dict[int, _ServedProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._read, name="concurry-forkserver-reader", daemon=True).start()

    def fork(self, child_fd: int, control_fd: int) -> _ServedProcess:
        """Have the helper fork a worker serving ``child_fd``; the descriptors are sent, not kept."""
        with self._request_lock:
            if not self.alive:
                raise RuntimeError("the concurry fork server has exited")
            socket.send_fds(self.sock, [b"F"], [child_fd, control_fd])
            process = self._replies.get()
        if process is None:
            raise RuntimeError("the concurry fork server exited while starting a worker")
        return process

    def _read(self) -> None:
        buffer = b""
        try:
            while True:
                data = self.sock.recv(4096)
                if not data:
                    break
                buffer += data
                while len(buffer) >= _MESSAGE.size:
                    pid, value = _MESSAGE.unpack_from(buffer)
                    buffer = buffer[_MESSAGE.size :]
                    self._dispatch(pid, value)
        except OSError:
            pass
        with self._lock:
            self.alive = False
            orphans = [p for p in self._children.values() if p.returncode is None]
            self._children.clear()
        for process in orphans:  # the helper died: its children must not linger
            process.kill()
            process._set_exit(-signal.SIGKILL)
        self._replies.put(None)

    def _dispatch(self, pid: int, value: int) -> None:
        with self._lock:
            if value == _FORKED:
                process = _ServedProcess(pid)
                if pid in self._early_exits:
                    process._set_exit(self._early_exits.pop(pid))
                else:
                    self._children[pid] = process
                self._replies.put(process)
                return
            process = self._children.pop(pid, None)
            if process is None:
                self._early_exits[pid] = value  # the exit overtook the fork reply
                return
        process._set_exit(value)

    def shutdown(self) -> None:
        """Close the helper's socket and reap it (it exits on EOF)."""
        self.alive = False
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        child_reaped(self.process)


_server: ForkServer | None = None
_server_lock = threading.Lock()


def get_server() -> ForkServer:
    """The fork server of this process, started on first use (and again if it died)."""
    global _server
    with _server_lock:
        if _server is None or not _server.alive:
            if _server is not None:
                _server.shutdown()
            _server = ForkServer()
        return _server


def shutdown() -> None:
    global _server
    with _server_lock:
        server, _server = _server, None
    if server is not None:
        server.shutdown()


def _forget_after_fork() -> None:
    global _server, _server_lock
    _server, _server_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)

__all__ = ["ForkServer", "get_server", "serve", "shutdown"]
