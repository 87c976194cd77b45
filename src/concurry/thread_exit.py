"""Waiting for our own threads, also while the interpreter shuts down.

Once finalization has begun, no thread but the finalizing one runs Python code again: a daemon
thread that was mid-way is frozen for good. ``Thread.join()`` on it may then wait forever (3.13),
raise (3.14), or return at once as if the thread had finished (3.10-3.12, whose thread states
are torn down). Everything that stops a worker waits through ``join`` here, which then answers
"not finished" at once, so the caller settles what the thread would have.
"""

from __future__ import annotations

import sys
import threading


def join(thread: threading.Thread, timeout: float | None = None) -> bool:
    """``thread.join(timeout)``, then whether the thread finished. While the interpreter is
    finalizing it never waits and answers False: the thread cannot finish any more."""
    if sys.is_finalizing():
        return False
    thread.join(timeout)
    return not thread.is_alive()
