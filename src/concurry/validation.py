"""Caller-side checks of constructor arguments, before any thread/process starts.

Plain classes: the arguments are bound to ``__init__``'s signature, so a wrong call fails in the
caller with Python's own ``TypeError``. Pydantic (and ``morphic.Typed``) models: the arguments
are validated and coerced by a *twin* of the model whose post-init hooks are disabled, so the
hooks (``model_post_init``, ``post_initialize``) run only where the instance will live.
"""

from __future__ import annotations

import functools
import inspect
import sys
from typing import Any


def check_init_args(cls: type, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Validate constructor arguments in the caller; return them (coerced, for models)."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(cls, pydantic.BaseModel):
        return _check_model(cls, args, kwargs)
    init = cls.__init__
    if init is object.__init__:
        if (args or kwargs) and cls.__new__ is object.__new__:
            raise TypeError(f"{cls.__name__}() takes no arguments, got {len(args) + len(kwargs)}")
        return args, kwargs
    try:
        signature = _signature(init)
    except (TypeError, ValueError):
        return args, kwargs  # signature unknown (C extension): the real __init__ will check
    try:
        signature.bind(None, *args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{cls.__name__}.init(): {exc}") from None
    return args, kwargs


@functools.cache
def _signature(init: Any) -> inspect.Signature:
    return inspect.signature(init)


def _check_model(cls: type, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    if args:
        raise TypeError(
            f"{cls.__name__} is a pydantic model: pass its fields as keyword arguments, "
            f"got {len(args)} positional argument(s)"
        )
    from .runtime import construct

    checked = construct(_validation_twin(cls), (), kwargs)
    fields = cls.model_fields
    return (), {
        (fields[name].alias or name): getattr(checked, name)
        for name in checked.model_fields_set
        if name in fields
    }


@functools.cache
def _validation_twin(cls: type) -> type:
    """A subclass of the model that validates exactly like it but runs no post-init hooks."""

    def no_post_init(self: Any, context: Any, /) -> None:
        return None

    namespace: dict[str, Any] = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
    if "model_post_init" in _defined_names(cls):
        namespace["model_post_init"] = no_post_init
    if hasattr(cls, "post_set_validate_inputs"):  # morphic.Typed runs post_initialize from here
        namespace["post_set_validate_inputs"] = lambda self: None
    return type(cls)(cls.__name__, (cls,), namespace)


def _defined_names(cls: type) -> set[str]:
    import pydantic

    return {
        name
        for klass in cls.__mro__
        if klass not in (pydantic.BaseModel, object)
        for name in vars(klass)
    }
