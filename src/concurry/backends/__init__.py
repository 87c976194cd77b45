"""Transports: each backend starts an instance somewhere, carries calls there, carries outcomes
back, notices death, and stops. Everything else lives in the runtime or the dispatch layer."""

from __future__ import annotations

from ..constants import ExecutionMode
from .base import Backend


def backend_class(mode: ExecutionMode) -> type[Backend]:
    """The backend class for ``mode``; imported lazily so unused modes cost nothing."""
    if mode is ExecutionMode.SYNC:
        from .sync import SyncBackend

        return SyncBackend
    if mode is ExecutionMode.THREAD:
        from .thread import ThreadBackend

        return ThreadBackend
    if mode is ExecutionMode.ASYNCIO:
        from .asyncio import AsyncioBackend

        return AsyncioBackend
    if mode is ExecutionMode.PROCESS:
        from .process import ProcessBackend

        return ProcessBackend
    if mode is ExecutionMode.RAY:
        raise ValueError(
            "mode='ray' is not available in this version of concurry: the Ray backend "
            "has not been built yet; use mode='process' or mode='thread'"
        )
    raise ValueError(f"no backend for mode {mode!r}")


__all__ = ["Backend", "backend_class"]
