"""``sync`` mode: the call runs in the caller's thread, during the call; futures are born done.

Whatever the method raises, ``BaseException``s included, becomes the future's failure, as in
every other mode. One exception is not the method's: a Ctrl-C. Here the call runs in the
caller's thread, so the ``KeyboardInterrupt`` of a real SIGINT lands inside it; it propagates
to the caller, to stop the program as Ctrl-C does in every mode (there it lands in the caller's
thread, not in the call), instead of being tucked into a future nobody may ever read.
"""

from __future__ import annotations

import dis
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ..futures import BaseFuture, ConcurrentFuture, SyncFuture, set_outcome
from ..remote_traceback import user_frames
from ..runtime import CallOptions, Runtime
from .base import Backend


class SyncBackend(Backend):
    """No transport at all: the runtime lives in the calling thread."""

    def start(self) -> None:
        self.runtime = Runtime(self.cls, self.args, self.kwargs, CallOptions.of(self.options))

    def caller(self, name: str) -> Callable[..., BaseFuture]:
        """The one path for calls (``submit`` goes through it too): run now, return a done future."""
        invoke = self.runtime.invoke

        def call(*args: Any, **kwargs: Any) -> BaseFuture:
            if self._stopped:
                raise self.stopped_error()
            try:
                return SyncFuture(invoke(name, args, kwargs))
            except BaseException as exc:
                if _is_ctrl_c(exc):
                    raise
                exc.__traceback__ = user_frames(exc.__traceback__)  # from the user's frame on
                return SyncFuture(None, exc)

        return call

    def submit(
        self, name: str, args: tuple, kwargs: dict, future: ConcurrentFuture | None = None
    ) -> BaseFuture:
        done = self.caller(name)(*args, **kwargs)
        if future is None:
            return done
        if future.set_running_or_notify_cancel():
            error = done.exception()
            set_outcome(future, None if error is not None else done.result(), error)
        return future

    def stop(self, timeout: float | None = None, cancel_futures: bool = False, wait: bool = True) -> None:
        if self._begin_stop():
            self.runtime.request_stop()  # a call in a back-off (in another thread) ends now
            self.runtime.close()


_RAISE = dis.opmap["RAISE_VARARGS"]


def _is_ctrl_c(exc: BaseException) -> bool:
    """Was this ``KeyboardInterrupt`` delivered by the SIGINT handler, not raised by the method?

    A ``raise`` statement leaves its frame stopped on a ``RAISE_VARARGS`` instruction. Python
    runs signal handlers only between other instructions (calls, loop jumps), so a Ctrl-C (or
    ``_thread.interrupt_main()``) leaves the innermost frame anywhere but on a ``raise``.
    """
    if not isinstance(exc, KeyboardInterrupt):
        return False
    tb: TracebackType | None = exc.__traceback__
    if tb is None:
        return True
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code.co_code
    return not (0 <= tb.tb_lasti < len(code) and code[tb.tb_lasti] == _RAISE)
