"""mypy plugin: what ``@worker`` does to a class. Enable: ``plugins = ["concurry.mypy_plugin"]``.

mypy ignores the return type of class decorators, so without help it believes a ``@worker``
class is unchanged: ``Counter.init`` "does not exist" and ``Counter(10)`` "is a Counter". This
plugin adds ``init`` and ``options`` to decorated classes (as ``Worker`` subclasses inherit
them), and types calling any worker class as ``init`` does: a worker handle, not an instance.
Handles' methods are ``Any`` (a future of the result, or the result with ``blocking``).
Only mypy imports this module; the library never does.
"""

from __future__ import annotations

from collections.abc import Callable

from mypy.nodes import ARG_STAR, ARG_STAR2, Argument, Decorator, FuncDef, TypeInfo, Var
from mypy.plugin import ClassDefContext, FunctionContext, Plugin
from mypy.plugins.common import add_method_to_class
from mypy.types import AnyType, CallableType, Type, TypeOfAny, get_proper_type

_DECORATOR = "concurry.worker.worker"
_WORKER = "concurry.worker.Worker"
_MARK = "concurry_worker"  # in TypeInfo.metadata (kept in mypy's cache)


def _any() -> AnyType:
    return AnyType(TypeOfAny.explicit)


def _decorated(ctx: ClassDefContext) -> bool:
    """Give a ``@worker`` class the ``init``/``options`` classmethods it has at run time."""
    info = ctx.cls.info
    info.metadata[_MARK] = {}
    handle = ctx.api.named_type_or_none("concurry.proxy.WorkerHandle", [])
    builder = ctx.api.named_type_or_none("concurry.worker.WorkerBuilder", [handle] if handle else [])
    if handle is None or builder is None:  # concurry's modules not analysed yet: ask again later
        if not ctx.api.final_iteration:
            ctx.api.defer()
            return False
        handle = builder = None
    star = [
        Argument(Var("args", _any()), _any(), None, ARG_STAR),
        Argument(Var("kwargs", _any()), _any(), None, ARG_STAR2),
    ]
    if "init" not in info.names:
        add_method_to_class(ctx.api, ctx.cls, "init", star, handle or _any(), is_classmethod=True)
    if "options" not in info.names:
        add_method_to_class(ctx.api, ctx.cls, "options", star[1:], builder or _any(), is_classmethod=True)
    return True


def _init_return(info: TypeInfo) -> Type | None:
    """The declared return type of ``info.init`` (the handle its calls create), if it has one."""
    symbol = info.get("init")
    node = symbol.node if symbol is not None else None
    if isinstance(node, Decorator):
        node = node.func
    if isinstance(node, FuncDef):
        signature = get_proper_type(node.type)
        if isinstance(signature, CallableType):
            return signature.ret_type
    return None


class ConcurryPlugin(Plugin):
    def get_class_decorator_hook_2(self, fullname: str) -> Callable[[ClassDefContext], bool] | None:
        return _decorated if fullname == _DECORATOR else None

    def get_function_hook(self, fullname: str) -> Callable[[FunctionContext], Type] | None:
        symbol = self.lookup_fully_qualified(fullname)
        info = symbol.node if symbol is not None else None
        if not isinstance(info, TypeInfo):
            return None
        decorated = any(_MARK in base.metadata for base in info.mro)  # the class or a base
        if not decorated and (not info.has_base(_WORKER) or info.fullname == _WORKER):
            return None
        return _constructed(info)


def _constructed(info: TypeInfo) -> Callable[[FunctionContext], Type]:
    def hook(ctx: FunctionContext) -> Type:
        # The arguments were checked against __init__ already; only what comes back differs.
        returned = _init_return(info)
        return ctx.default_return_type if returned is None else returned

    return hook


def plugin(version: str) -> type[Plugin]:
    return ConcurryPlugin
