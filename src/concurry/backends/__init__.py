"""Transports: each backend starts an instance somewhere, carries calls there, carries outcomes
back, notices death, and stops. Everything else lives in the runtime or the dispatch layer."""

from __future__ import annotations

from typing import Any

from ..constants import ExecutionMode
from ..futures import BaseFuture, register_object_ref_wrapper
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
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ImportError(
                "mode='ray' needs Ray, which is not installed: pip install 'concurry[ray]' "
                "(or pip install 'ray>=2.9')"
            ) from None
        from .ray import RayBackend

        return RayBackend
    raise ValueError(f"no backend for mode {mode!r}")


def _wrap_object_ref(ref: Any) -> BaseFuture[Any]:
    """``wrap_future(object_ref)``: a ``RayFuture`` (Ray is imported only now, when one is met)."""
    from .ray_future import RayFuture

    return RayFuture.of(ref)


register_object_ref_wrapper(_wrap_object_ref)

__all__ = ["Backend", "backend_class"]
