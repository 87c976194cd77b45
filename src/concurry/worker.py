"""Defining and creating workers: ``@worker``, ``Worker``, ``W.options(...).init(...)``.

Calling a worker class (or ``.init``) creates a worker and returns a handle, never a bare
instance. ``@worker`` on a plain class returns a subclass with the same name, docstring and
methods whose metaclass (``WorkerMeta``) adds that behaviour; ``Worker`` subclasses get it from
``Worker.__new__`` instead, so they can mix in classes with metaclasses of their own. Either
way the user's instance is built by the ordinary construction protocol, inside the worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, overload

from .config import resolve_options
from .options import validate_options
from .retry import check_retry_methods
from .validation import check_init_args
from .worker_limits import LIMITS_ATTRIBUTE, LimitsAttribute, bind_limits

if TYPE_CHECKING:
    from .proxy import WorkerHandle

#: What a builder's ``init()`` returns: a worker handle, or a TaskWorker's (an Executor too).
H = TypeVar("H", bound="WorkerHandle", covariant=True)


class _WorkerClassMeta(type):
    def __getattr__(cls, name: str) -> Any:  # for type checkers: the class's own attributes
        raise AttributeError(name)


class WorkerClass(metaclass=_WorkerClassMeta):
    """What type checkers see for a ``@worker`` class: ``worker`` returns ``type[WorkerClass]``.

    The honest part of what the class now is: calling it, ``init(...)`` and ``options(...).init(...)``
    return a worker handle, not an instance, and it can still be subclassed. Its own attributes
    are ``Any`` (typing cannot say "the same class, plus these"). Never instantiated. mypy ignores
    class decorators' return types: its plugin ``concurry.mypy_plugin`` says the same thing.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> WorkerHandle:
        raise TypeError("WorkerClass only describes @worker classes to type checkers")

    @classmethod
    def init(cls, *args: Any, **kwargs: Any) -> WorkerHandle:
        raise TypeError("WorkerClass only describes @worker classes to type checkers")

    @classmethod
    def options(cls, **options: Any) -> WorkerBuilder[WorkerHandle]:
        raise TypeError("WorkerClass only describes @worker classes to type checkers")


def _options(cls: type, options: dict[str, Any]) -> WorkerBuilder[Any]:
    return WorkerBuilder(cls, _merge(cls.__concurry_options__, options, cls))  # type: ignore[attr-defined]


def _init(cls: type, args: tuple, kwargs: dict) -> Any:
    return WorkerBuilder(cls, cls.__concurry_options__).init(*args, **kwargs)  # type: ignore[attr-defined]


class WorkerMeta(type):
    """Metaclass of ``@worker`` classes: ``W(...)`` is ``W.init(...)``; ``W.options(...)`` configures."""

    __concurry_options__: dict[str, Any]

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls.init(*args, **kwargs)

    def __concurry_construct__(cls, *args: Any, **kwargs: Any) -> Any:
        """Build a real instance (used where the instance lives), skipping ``__call__`` above."""
        return super().__call__(*args, **kwargs)

    def options(cls, **options: Any) -> WorkerBuilder[WorkerHandle]:
        """A builder with these options over the class defaults; the class is left unchanged.

        Options are validated now (unknown names, wrong types and out-of-range values raise
        ``ValueError``/``TypeError``).
        """
        return _options(cls, options)

    def init(cls, *args: Any, **kwargs: Any) -> WorkerHandle:
        """Create a worker (or a pool) with the class defaults; args go to ``__init__``."""
        return _init(cls, args, kwargs)


_building = threading.local()  # the Worker subclass whose real instance is being built here


class Worker:
    """Base class alternative to ``@worker``: ``class W(Worker): ...`` behaves the same.

    It has no metaclass, so a subclass may also derive from ``pydantic.BaseModel``,
    ``morphic.Typed`` or ``abc.ABC``. ``W(...)`` makes a worker because ``__new__`` returns the
    handle (Python then skips ``__init__``); inside the worker, ``__concurry_construct__``
    asks ``__new__`` for a real instance instead.
    """

    __concurry_options__: ClassVar[dict[str, Any]] = {}
    #: Inside the worker: its ``LimitSet`` (or ``LimitPool``), already in ``__init__``; an empty
    #: set that always grants when it was given no ``limits``.
    limits: ClassVar[LimitsAttribute] = LIMITS_ATTRIBUTE

    def __new__(cls, *args: Any, **kwargs: Any) -> WorkerHandle:  # (a real instance only inside the worker)
        if getattr(_building, "cls", None) is cls:
            _building.cls = None  # only this one: workers its __init__ creates are handles
            parent_new = super().__new__
            return parent_new(cls) if parent_new is object.__new__ else parent_new(cls, *args, **kwargs)
        return _init(cls, args, kwargs)

    @classmethod
    def __concurry_construct__(cls, *args: Any, **kwargs: Any) -> Any:
        _building.cls = cls
        try:
            return cls(*args, **kwargs)
        finally:
            _building.cls = None

    @classmethod
    def options(cls, **options: Any) -> WorkerBuilder[WorkerHandle]:
        """A builder with these options over the class defaults; see ``WorkerMeta.options``."""
        return _options(cls, options)

    @classmethod
    def init(cls, *args: Any, **kwargs: Any) -> WorkerHandle:
        """Create a worker (or a pool) with the class defaults; args go to ``__init__``."""
        return _init(cls, args, kwargs)


class WorkerBuilder(Generic[H]):
    """The result of ``W.options(...)``: holds validated options until ``init()``.

    ``H`` is the handle type ``init()`` returns (``WorkerHandle``; a TaskWorker's is an Executor).
    """

    __slots__ = ("_cls", "_options")

    def __init__(self, cls: type, options: dict[str, Any]):
        self._cls = cls
        self._options = options

    def options(self, **options: Any) -> WorkerBuilder[H]:
        return WorkerBuilder(self._cls, _merge(self._options, options, self._cls))

    def init(self, *args: Any, **kwargs: Any) -> H:
        """Create the worker (or pool). A list of ``limits`` becomes the worker's own set, or one
        set shared by a pool's workers; a shared set that cannot reach this mode is refused here."""
        options = bind_limits(resolve_options(self._options))
        args, kwargs = check_init_args(self._cls, args, kwargs)
        if options.is_pool:
            from .pool import create_pool

            return create_pool(self._cls, args, kwargs, options)
        from .proxy import create_worker

        return create_worker(self._cls, args, kwargs, options)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the builder lacks: a method of the class means the user meant
        # to call it on a worker, which ``init()`` creates.
        if not name.startswith("_") and callable(getattr(self._cls, name, None)):
            cls = self._cls.__name__
            raise AttributeError(
                f"{cls}.options(...) returns a builder, not a worker: call .init(...) on it first to "
                f"create the worker, then call {name} on what init() returns: "
                f"{cls}.options(...).init(...).{name}(...)"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"{self._cls.__name__}.options({', '.join(f'{k}={v!r}' for k, v in self._options.items())})"


def _merge(base: dict[str, Any], options: dict[str, Any], cls: type) -> dict[str, Any]:
    """``options`` validated and laid over ``base``; the combination is checked too, so
    ``@worker(mode="sync")`` then ``.options(max_workers=4)`` fails at ``options()`` time,
    and so is every per-method retry dict against ``cls``'s methods."""
    merged = validate_options(options, base)
    check_retry_methods(cls, merged)
    return merged


_METACLASSES: dict[type, type] = {}


def _worker_metaclass(meta: type) -> type:
    """``WorkerMeta`` combined with the class's own metaclass (pydantic's, ABCMeta, ...)."""
    if issubclass(meta, WorkerMeta):
        return meta
    if meta is type:
        return WorkerMeta
    if meta not in _METACLASSES:
        _METACLASSES[meta] = type(f"Worker{meta.__name__}", (WorkerMeta, meta), {"__module__": __name__})
    return _METACLASSES[meta]


def derived_metaclasses() -> dict[type, tuple]:
    """Each metaclass derived here, with the pickle reduction that derives it again elsewhere
    (it is not a module attribute, so it cannot travel by name)."""
    return {derived: (_worker_metaclass, (meta,)) for meta, derived in _METACLASSES.items()}


def _make_worker_class(cls: type, options: dict[str, Any]) -> type:
    if isinstance(cls, WorkerMeta) or issubclass(cls, Worker):
        # Already a worker class (a Worker subclass, or a subclass of a decorated class):
        # the decorator only sets its defaults, over the ones it inherits.
        cls.__concurry_options__ = _merge(cls.__concurry_options__, options, cls)
        return cls
    check_retry_methods(cls, options)
    namespace = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
        "__concurry_options__": options,
    }
    made = _worker_metaclass(type(cls))(cls.__name__, (cls,), namespace)
    if not hasattr(cls, "limits"):  # the class's own ``limits`` (attribute, property, slot) wins
        # set after the class is made: a model class (pydantic) would take it for a field
        made.limits = LIMITS_ATTRIBUTE
    return made


@overload
def worker(cls: type[Any], /) -> type[WorkerClass]: ...
@overload
def worker(cls: None = None, /, **options: Any) -> Callable[[type[Any]], type[WorkerClass]]: ...


def worker(cls: type | None = None, /, **options: Any) -> Any:
    """Make a class a worker: ``@worker`` or ``@worker(mode="thread", ...)``; options become defaults.

    Every worker option is validated here. Inside the worker, ``self.limits`` is its
    ``LimitSet`` (``limits=``; an empty set that always grants without it).
    """
    validated = validate_options(options)
    if cls is not None:
        if not isinstance(cls, type):
            raise TypeError(f"@worker decorates classes, got {cls!r}; use @task for functions")
        return _make_worker_class(cls, validated)

    def decorate(target: type) -> type:
        if not isinstance(target, type):
            raise TypeError(f"@worker decorates classes, got {target!r}; use @task for functions")
        return _make_worker_class(target, validated)

    return decorate
