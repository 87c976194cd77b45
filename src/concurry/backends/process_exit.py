"""Process workers at interpreter exit: children never outlive the interpreter, and exit never
waits on them for long.

Every live ``ProcessBackend`` is in ``live`` (it adds itself once its child exists and leaves
once the child is reaped). At exit every child is asked to stop at once and they share one
grace period, so exit takes about ``EXIT_GRACE`` however many workers are alive (busy ones are
killed when it ends); then the fork server, if one was started, is shut down.
"""

from __future__ import annotations

import atexit
import sys
import time
import weakref

live: weakref.WeakSet = weakref.WeakSet()  # ProcessBackend objects whose child may be alive

EXIT_GRACE = 1.0  # seconds every child gets, together, to finish at interpreter exit


@atexit.register
def _stop_all_at_exit() -> None:
    backends = list(live)
    for backend in backends:
        backend.stop(timeout=0, wait=False)
    deadline = time.monotonic() + EXIT_GRACE
    for backend in backends:
        backend._reap(deadline)  # after the deadline each one is killed without waiting
    server = sys.modules.get(__package__ + ".forkserver")  # never imported here: only if in use
    if server is not None:
        server.shutdown()
