"""The store of a set shared by processes: a memory-mapped file, ``flock``, and named pipes.

Everything lives in one private directory (mode 0700, on ``/dev/shm`` where it exists): the
file ``state`` holds the ledger's floats and is mapped into every process that uses the set; an
exclusive ``flock`` on it is the cross-process lock (the kernel drops it if its holder dies, so a
killed worker can never leave the set locked); each waiter owns a FIFO ``w<id>`` it sleeps on
with ``poll``, and whoever changes the state writes a byte to the FIFO of each waiter first in
line for its limits.
No server process and no socket. Another process attaches by the directory's path (the store
pickles as that; a process opens each directory once, however often the set is unpickled in it);
the process that made the store removes the directory when the store is garbage-collected or the
interpreter exits, so it must keep its set for as long as other processes use it.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import itertools
import math
import mmap
import os
import select
import shutil
import tempfile
import threading
import weakref
from typing import Any

_STORES: weakref.WeakSet[ProcessStore] = weakref.WeakSet()
# the store of each directory this process has open: a set unpickled again in the same process
# shares it (one lock, one file descriptor) instead of opening the files once more
_ATTACHED: weakref.WeakValueDictionary[str, ProcessStore] = weakref.WeakValueDictionary()
_ID_BITS = 31  # a waiter id is pid << 31 | a counter: unique per machine, exact as a float


def attach(size: int, directory: str) -> ProcessStore:
    """This process's store of ``directory`` (what an unpickled process-shared set uses)."""
    store = _ATTACHED.get(directory)
    if store is None or store.size != size:
        store = ProcessStore(size, directory)
    return store


def _gone() -> RuntimeError:
    return RuntimeError(
        "this LimitSet(shared=True, mode='process') is gone: the process that made it dropped it or "
        "exited (keep the set in that process for as long as other processes use it)"
    )


def _base_dir() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _remove(path: str, owner: int) -> None:
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


class _FlockLock:
    """The cross-process lock: a thread lock (``flock`` is per open file, not per thread) and
    then an exclusive ``flock`` on the state file."""

    __slots__ = ("_fd", "_thread_lock")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._thread_lock = threading.Lock()

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()


class _FifoWaiter:
    """A waiter's FIFO, opened read-write (so it always has a writer and ``poll`` blocks until a
    byte arrives), drained after each wake-up."""

    __slots__ = ("fd", "id", "path", "pid")

    def __init__(self, directory: str, waiter_id: float) -> None:
        self.id = waiter_id
        self.pid = os.getpid()
        self.path = os.path.join(directory, f"w{int(waiter_id)}")
        self.fd = -1
        try:
            os.mkfifo(self.path, 0o600)
        except FileExistsError:
            pass
        except FileNotFoundError:
            raise _gone() from None
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)

    def _drain(self) -> None:
        try:
            while os.read(self.fd, 512):
                pass
        except BlockingIOError:
            pass

    def wait(self, timeout: float | None) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        # poll counts whole milliseconds: round up, or a wait under 1 ms would not sleep at all
        poller.poll(None if timeout is None else max(0, math.ceil(timeout * 1000)))
        self._drain()

    async def async_wait(self, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def readable() -> None:
            if not future.done():
                future.set_result(None)

        loop.add_reader(self.fd, readable)
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            loop.remove_reader(self.fd)
        self._drain()

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
            if self.pid != os.getpid():  # a forked child's copy: the FIFO is still the parent's
                return
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def __del__(self) -> None:  # a thread's waiter goes with its thread
        try:
            self.close()
        except Exception:
            pass


class ProcessStore:
    """State in shared memory, guarded by ``flock``; waiters woken through their FIFOs."""

    shared_across_processes = True

    def __init__(self, size: int, directory: str | None = None) -> None:
        self.size = size
        self.owner = directory is None
        if directory is None:
            directory = tempfile.mkdtemp(prefix="concurry-limits-", dir=_base_dir())
            with open(os.path.join(directory, "state"), "wb") as f:
                f.truncate(size * 8)
            weakref.finalize(self, _remove, directory, os.getpid())
        self.directory = directory
        self._open()
        _STORES.add(self)
        _ATTACHED[directory] = self

    def _open(self) -> None:
        self.pid = os.getpid()
        try:
            fd = os.open(os.path.join(self.directory, "state"), os.O_RDWR)
        except FileNotFoundError:
            raise _gone() from None
        self._fd = fd
        self._close_fd = weakref.finalize(self, os.close, fd)
        self._map = mmap.mmap(fd, self.size * 8)
        self.view = memoryview(self._map).cast("d")
        self.lock = _FlockLock(fd)
        self._ids = itertools.count(1)
        self._local = threading.local()

    def _after_fork(self) -> None:
        # the child shares the parent's open file (and so its flock): open its own
        self._close_fd()
        self._open()

    def __reduce__(self) -> tuple:
        return (attach, (self.size, self.directory))

    def _new_id(self) -> float:
        return float((self.pid << _ID_BITS) | (next(self._ids) & ((1 << _ID_BITS) - 1)))

    def thread_waiter(self) -> _FifoWaiter:
        waiter = getattr(self._local, "waiter", None)
        if waiter is None or waiter.pid != self.pid:
            waiter = self._local.waiter = _FifoWaiter(self.directory, self._new_id())
        return waiter

    def loop_waiter(self) -> Any:
        return _AsyncFifoWaiter(_FifoWaiter(self.directory, self._new_id()))

    def forget(self, waiter: Any) -> None:
        if isinstance(waiter, _AsyncFifoWaiter):
            waiter.fifo.close()

    def wake(self, ids: list[float]) -> list[float]:
        """Wake the waiters ``ids``; return those whose FIFO has no reader any more. A live waiter
        keeps its FIFO open from before it queues until after it leaves, so these are waiters
        whose process died while queued."""
        dead: list[float] = []
        for waiter_id in ids:
            path = os.path.join(self.directory, f"w{int(waiter_id)}")
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno == errno.ENXIO:  # nobody reading it
                    dead.append(waiter_id)
                    continue
                if e.errno == errno.ENOENT:  # gone: the waiter left
                    continue
                raise
            try:
                os.write(fd, b"\0")
            except (BlockingIOError, BrokenPipeError):
                pass  # full (it will wake anyway) or its reader just left
            finally:
                os.close(fd)
        return dead


class _AsyncFifoWaiter:
    __slots__ = ("fifo", "id")

    def __init__(self, fifo: _FifoWaiter) -> None:
        self.fifo = fifo
        self.id = fifo.id

    async def wait(self, timeout: float | None) -> None:
        await self.fifo.async_wait(timeout)


def _reopen_after_fork() -> None:
    for store in list(_STORES):
        store._after_fork()


os.register_at_fork(after_in_child=_reopen_after_fork)
