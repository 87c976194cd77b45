"""How a worker class (and what it carries) travels to a worker process.

Classes, functions and instances of importable modules travel by reference: plain pickle, the
fast path, unchanged. What lives in ``__main__`` (a script, ``python -c``, a notebook) travels by
value with cloudpickle, and a class carries everything its methods reach. Plain cloudpickle gets
several such things wrong; ``dumps`` fixes each where it travels:

- A module's namespace dict reached by value (``pydantic.validate_call`` keeps the one of the
  module it decorated in) would copy the whole script (every handle, lock and open file in it):
  it travels as a reference to that module's namespace in the child; for ``__main__``, the one
  the by-value functions share there.
- Objects whose ``__getattr__`` reads their own attributes (pydantic's config wrapper inside
  every validated function) recurse when the default unpickling asks them for ``__setstate__``
  before any attribute is set: their state is restored without that lookup.
- A function frame's locals (pydantic keeps the decorating frame's; a live proxy of the frame
  from Python 3.13) travel as a snapshot dict.
- Standard-library wrappers that hold per-process machinery or pickle as a name only the
  script knows (``lru_cache``/``cache``, ``cached_property``, ``singledispatch`` and
  ``singledispatchmethod``) are rebuilt in the child from their public parts.
- Code objects: cloudpickle replaces their file name with ``"<dynamic-code>"``, so a traceback
  in the child shows neither the script's name nor its lines. They travel as ``marshal`` data
  (what ``.pyc`` files hold, nested code included), which keeps the real file name and lines:
  the child's ``linecache`` reads the script's source like any module's. Parent and child run
  the same interpreter, so the format matches.
- The library's own objects: live worker handles become stand-ins that fail clearly when used
  (a handle works only in the process that made it), ``@task`` functions travel as their
  recipe, and the metaclasses ``@worker`` derives travel by reference.
"""

from __future__ import annotations

import functools
import inspect
import io
import marshal
import os
import pickle
import sys
from types import CodeType, FunctionType, ModuleType
from typing import Any

import cloudpickle

_LRU_WRAPPER = type(functools.lru_cache()(lambda: None))


def _frame_locals_type() -> type:
    return type(inspect.currentframe().f_locals)  # type: ignore[union-attr]


# A function frame's ``f_locals``: a live proxy from Python 3.13 (PEP 667), a dict before.
_FRAME_LOCALS = _frame_locals_type()
_MODULE_ATTRIBUTES = ("__package__", "__name__", "__path__", "__file__")


def dumps_worker(cls: type, rest: tuple) -> bytes:
    """The worker class and what follows it (constructor arguments, ...) for a worker process;
    the child's ``pickle.loads`` gives ``(cls, *rest)``. Handles the class reaches become
    stand-ins; a handle passed as an argument is refused here, as for any call."""
    return _dumps((cls, *rest), [(cls, True), (rest, False)])


def dumps(value: Any) -> bytes:
    """``value`` for a worker process, as ``dumps_worker`` sends the class; ``pickle.loads``
    in the child rebuilds it."""
    return _dumps(value, [(value, False)])


def _dumps(value: Any, parts: list[tuple[Any, bool]]) -> bytes:
    try:  # the fast path: plain pickle, when everything travels by reference
        buffer = io.BytesIO()
        _ByReference(buffer, 5).dump(value)
        return buffer.getvalue()
    except Exception:  # __main__ objects, lambdas, local classes: they travel by value
        pass
    buffer = io.BytesIO()
    pickler = _ClassPickler(buffer, 5)
    for part, stand_ins in parts:  # one stream, one memo: the parts share what they share
        pickler.stand_ins = stand_ins
        pickler.dump(part)
    # Wrapped so the child's plain ``pickle.loads`` hands it to ``loads`` (persistent ids).
    return pickle.dumps(_Wrapped(buffer.getvalue(), len(parts) > 1), protocol=5)


def loads(data: bytes, worker: bool) -> Any:
    """The child's side of ``_dumps`` for what travelled by value."""
    unpickler = _Unpickler(io.BytesIO(data))
    if not worker:
        return unpickler.load()
    cls = unpickler.load()
    return (cls, *unpickler.load())


class _ByValue(Exception):
    """Something refers to ``__main__``: plain pickle would write a name the child lacks."""


class _ByReference(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        module = obj.__module__ if kind is FunctionType or isinstance(obj, type) else kind.__module__
        if module == "__main__" or (kind is _LRU_WRAPPER and obj.__module__ == "__main__"):
            raise _ByValue
        return NotImplemented


class _Wrapped:
    __slots__ = ("data", "worker")

    def __init__(self, data: bytes, worker: bool):
        self.data, self.worker = data, worker

    def __reduce__(self) -> Any:
        return loads, (self.data, self.worker)


class _ClassPickler(cloudpickle.Pickler):
    """cloudpickle, plus the fixes listed in the module docstring."""

    stand_ins = True  # live handles become stand-ins (else they fail to pickle, as in a call)

    def __init__(self, file: Any, protocol: int):
        super().__init__(file, protocol)
        main = sys.modules.get("__main__")
        self._main_namespace = vars(main) if main is not None else None
        self._namespaces = {
            id(vars(module)): name
            for name, module in list(sys.modules.items())
            if isinstance(module, ModuleType) and getattr(module, "__spec__", None) is not None
        }
        from .proxy import WorkerHandle
        from .task import TaskFunction
        from .worker import derived_metaclasses

        self._handle_type, self._task_type = WorkerHandle, TaskFunction
        self._metaclasses = derived_metaclasses()

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is not dict:
            return None
        if obj is self._main_namespace:
            # The namespace the script's functions get in the child, shared with them.
            globals_ref = getattr(self, "globals_ref", None)
            shared = {} if globals_ref is None else globals_ref.setdefault(id(obj), {})
            if not shared:  # as cloudpickle fills it: what relative imports need
                shared.update({k: obj[k] for k in _MODULE_ATTRIBUTES if k in obj})
            return ("main", shared)
        name = self._namespaces.get(id(obj))
        return None if name is None or name == "__main__" else ("module", name)

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is FunctionType:
            if "registry" in obj.__dict__ and obj.__module__ == "__main__":
                registry = obj.__dict__["registry"]
                if hasattr(obj, "__wrapped__") and callable(getattr(obj, "dispatch", None)):
                    return _singledispatch, (obj.__wrapped__, dict(registry))
            return super().reducer_override(obj)
        if kind is CodeType:
            try:
                return marshal.loads, (marshal.dumps(obj),)
            except ValueError:  # a constant marshal refuses (code built by hand): cloudpickle's way
                return super().reducer_override(obj)
        if isinstance(obj, type):
            derive = self._metaclasses.get(obj)
            return derive if derive is not None else super().reducer_override(obj)
        if self.stand_ins and isinstance(obj, self._handle_type):
            return HandleElsewhere, (repr(obj), os.getpid())
        if kind is self._task_type:
            return self._task_type, (obj.fn, obj._options)
        if kind is _LRU_WRAPPER and obj.__module__ == "__main__":
            return _lru_cache, (obj.__wrapped__, obj.cache_parameters())
        if kind is _FRAME_LOCALS and kind is not dict:
            return dict, (dict(obj),)
        if kind is functools.cached_property:
            return _cached_property, (obj.func, obj.attrname)
        if kind is functools.singledispatchmethod:
            return _singledispatchmethod, (obj.func, dict(obj.dispatcher.registry))
        if (
            hasattr(kind, "__getattr__")
            and kind.__reduce_ex__ is object.__reduce_ex__
            and kind.__reduce__ is object.__reduce__
            and getattr(kind, "__setstate__", None) is None
        ):
            return _without_setstate_lookup(obj)
        return super().reducer_override(obj)


def _without_setstate_lookup(obj: Any) -> Any:
    """The default reduction, restoring the state with ``_set_state`` (pickle's own rule)
    instead of asking the half-built object for ``__setstate__``."""
    reduced = obj.__reduce_ex__(5)
    if not isinstance(reduced, tuple) or len(reduced) < 3 or reduced[2] is None:
        return reduced
    padded = (*reduced, None, None)[:5]
    return (*padded, _set_state)


def _set_state(obj: Any, state: Any) -> Any:
    slots = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    if state:
        vars(obj).update(state)
    if slots:
        for name, value in slots.items():
            setattr(obj, name, value)
    return obj


def _lru_cache(function: Any, parameters: dict) -> Any:
    return functools.lru_cache(maxsize=parameters["maxsize"], typed=parameters["typed"])(function)


def _cached_property(function: Any, name: str | None) -> functools.cached_property:
    prop = functools.cached_property(function)
    if name is not None:
        prop.__set_name__(None, name)
    return prop


def _singledispatch(function: Any, registry: dict) -> Any:
    dispatcher = functools.singledispatch(function)
    for kind, implementation in registry.items():
        if kind is not object:
            dispatcher.register(kind, implementation)
    return dispatcher


def _singledispatchmethod(function: Any, registry: dict) -> functools.singledispatchmethod:
    method = functools.singledispatchmethod(function)
    for kind, implementation in registry.items():
        if kind is not object:
            method.register(kind, implementation)
    return method


class _Unpickler(pickle.Unpickler):
    def persistent_load(self, pid: Any) -> Any:
        kind, value = pid
        if kind == "main":
            return value
        import importlib

        return vars(importlib.import_module(value))


class HandleElsewhere:
    """What a worker handle becomes when a class sent by value to a worker process refers to
    it: the worker lives in the process that made it, so any use here fails clearly."""

    def __init__(self, description: str, pid: int):
        self._description = description
        self._pid = pid

    def __reduce__(self) -> Any:
        return HandleElsewhere, (self._description, self._pid)

    def _refuse(self) -> RuntimeError:
        return RuntimeError(
            f"worker handle {self._description} belongs to process {self._pid}: a handle works only in "
            f"the process that created it, and this one reached process {os.getpid()} inside a worker "
            "class sent by value. Create the worker inside this worker (e.g. in __init__), or pass "
            "it the values it needs"
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise self._refuse()

    def __enter__(self) -> Any:
        raise self._refuse()

    def __exit__(self, *exc_info: Any) -> None:
        return None

    def __repr__(self) -> str:
        return f"<{self._description} of process {self._pid}, not usable here>"
