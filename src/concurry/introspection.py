"""What a user sees of a handle at run time: ``dir()``, ``help()`` and ``inspect.signature``.

Each worker class gets its own handle class per kind of handle (one worker, pool, on-demand
pool), built once and cached. It is named after the worker class, carries its docstring, and has
one class attribute per public method (a ``MethodSlot``) with that method's name, docstring and
signature without ``self``. So ``dir(handle)`` lists the methods (tab completion in a REPL or a
notebook) and ``help(handle)`` documents them.

The first access to a method on a handle builds the backend's caller, copies the same metadata
onto it (``describe``) and caches it in the handle's ``__dict__``; later accesses find it there
and never reach the slot. Nothing here runs per call.
"""

from __future__ import annotations

import inspect
import types
import weakref
from collections.abc import Callable
from typing import Any

# Classes whose methods are the framework's, not the user's: left out of dir() and help(),
# still callable through the handle (``__getattr__``) as before.
_FRAMEWORK_MODULES = ("builtins", "abc", "typing", "concurry.worker")
_FRAMEWORK_PACKAGES = ("pydantic", "pydantic_core", "morphic")


def _is_framework(klass: type) -> bool:
    module = getattr(klass, "__module__", "") or ""
    return module in _FRAMEWORK_MODULES or module.split(".")[0] in _FRAMEWORK_PACKAGES


def public_methods(cls: type) -> list[str]:
    """Names of the public methods the user's classes define (in ``cls`` or its own bases)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if _is_framework(klass):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or isinstance(value, type):
                continue
            try:
                attr = getattr(cls, name)
            except Exception:  # a descriptor that fails on the class: not a method we can list
                continue
            if callable(attr) and not isinstance(attr, type):
                names.add(name)
    return sorted(names)


def method_signature(cls: type, name: str) -> inspect.Signature | None:
    """The signature a handle's method has: the method's own, without ``self``."""
    attr = getattr(cls, name)
    try:
        signature = inspect.signature(attr)
    except (TypeError, ValueError):
        return None
    raw = inspect.getattr_static(cls, name, None)
    if isinstance(raw, (staticmethod, classmethod)) or inspect.ismethod(attr):
        return signature  # no ``self`` to drop (a classmethod's ``cls`` is bound already)
    params = list(signature.parameters.values())
    if params and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        return signature.replace(parameters=params[1:])
    return signature


class MethodInfo:
    """A method's name, qualified name, module, docstring and signature (computed once)."""

    __slots__ = ("doc", "module", "name", "qualname", "signature")

    def __init__(self, cls: type, name: str):
        attr = getattr(cls, name, None)
        self.name = name
        self.qualname = f"{cls.__qualname__}.{name}"
        self.module = cls.__module__
        try:
            self.doc = inspect.getdoc(attr) if attr is not None else None
        except Exception:
            self.doc = None
        try:
            self.signature = method_signature(cls, name) if attr is not None else None
        except Exception:
            self.signature = None


def describe(caller: Callable[..., Any], info: MethodInfo) -> Callable[..., Any]:
    """``caller`` with the method's metadata, so ``help`` and ``inspect`` show the method.

    Backends' callers are fresh closures, one per handle and method: they are given the
    attributes themselves (no extra call layer). Any other callable is wrapped once.
    """
    if not isinstance(caller, types.FunctionType):
        inner = caller

        def caller(*args: Any, **kwargs: Any) -> Any:
            return inner(*args, **kwargs)

    caller.__name__ = info.name
    caller.__qualname__ = info.qualname
    caller.__module__ = info.module
    caller.__doc__ = info.doc
    if info.signature is not None:
        caller.__signature__ = info.signature  # type: ignore[attr-defined]
    return caller


class MethodSlot:
    """Class attribute of a handle class for one public method of the worker class.

    On the class it documents the method (pydoc lists it with its signature and docstring). On
    a handle, the first access builds the method's caller and caches it in the handle's
    ``__dict__``, which takes precedence from then on (this is a non-data descriptor).
    """

    def __init__(self, info: MethodInfo):
        self.info = info
        self.__name__ = info.name
        self.__qualname__ = info.qualname
        self.__module__ = info.module
        self.__doc__ = info.doc
        if info.signature is not None:
            self.__signature__ = info.signature

    def __get__(self, handle: Any, owner: type | None = None) -> Any:
        if handle is None:
            return self
        return handle._method(self.info)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self.__qualname__} is called on a worker handle: handle.{self.__name__}(...)")


class _HandleDoc:
    """The handle class's docstring; ``None`` on a handle itself, so that ``help(handle)``
    documents the handle class (pydoc only shows an instance's repr when it has a docstring)."""

    def __init__(self, doc: str):
        self.doc = doc

    def __get__(self, handle: Any, owner: type | None = None) -> str | None:
        return self.doc if handle is None else None


_CLASSES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # worker class -> {bases: class}


def handle_type(cls: type, bases: tuple[type, ...]) -> type:
    """The handle class for ``cls`` over ``bases`` (cached; it holds no reference to ``cls``)."""
    try:
        per_class = _CLASSES.setdefault(cls, {})
    except TypeError:  # not weak-referenceable or not hashable: build it each time
        per_class = {}
    made = per_class.get(bases)
    if made is None:
        made = per_class[bases] = _build(cls, bases)
    return made


def _build(cls: type, bases: tuple[type, ...]) -> type:
    base = bases[-1]
    kind = getattr(base, "_handle_kind", "worker handle")
    doc = (
        f"{cls.__qualname__} {kind}: calling a method returns a future of its result\n"
        "(the result itself with blocking=True)."
    )
    class_doc = inspect.getdoc(cls)
    if class_doc:
        doc += f"\n\n{class_doc}"
    namespace: dict[str, Any] = {"__doc__": _HandleDoc(doc), "__module__": base.__module__}
    for name in public_methods(cls):
        if not any(hasattr(b, name) for b in bases):  # the handle's own API wins (stop, submit...)
            namespace[name] = MethodSlot(MethodInfo(cls, name))
    name = f"{base.__name__}[{cls.__name__}]"
    namespace["__qualname__"] = name
    return type(name, bases, namespace)
