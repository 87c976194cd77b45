"""Tracebacks and messages that point at the user's code, not at the library's machinery.

A call that fails in a worker is caught by the library's own loop, so its traceback starts
with the loop's frames (the process child's loop, the runtime, ``TaskWorker.submit``) before
it reaches the user's method. ``format_worker_traceback`` formats it from the first frame that
is not the library's. Frames further in stay, library ones included: they show what the user's
code called (another worker's ``result()``, say).

Formatting happens in the worker, where ``linecache`` reads the files it ran. A frame whose
file the worker cannot read (a notebook cell, whose source only the notebook's process holds in
``linecache``; later, a machine without the caller's files) gets its source line where the
traceback arrives: ``with_source_lines``.

``call_name`` names the user's method, or for ``TaskWorker.submit`` (which ``@task`` and
``Executor`` use) the user's function, in error messages.
"""

from __future__ import annotations

import asyncio
import linecache
import os
import re
import traceback
from types import TracebackType
from typing import Any

# The package's directory, as the interpreter spells code file names (absolute, normally).
_HERE = os.path.dirname(__file__)
_LIBRARY = tuple({os.path.join(_HERE, ""), os.path.join(os.path.abspath(_HERE), "")})
_DRIVERS = (*_LIBRARY, os.path.join(os.path.dirname(asyncio.__file__), ""))


def user_frames(tb: TracebackType | None) -> TracebackType | None:
    """``tb`` from its first frame outside this library (all of it if every frame is ours:
    the failure is the library's own, and its frames are what explains it). The event loop's
    frames among ours go too: they are the runtime driving an ``async def`` method."""
    if tb is None or not tb.tb_frame.f_code.co_filename.startswith(_LIBRARY):
        return tb
    start: TracebackType | None = tb
    while start is not None and start.tb_frame.f_code.co_filename.startswith(_DRIVERS):
        start = start.tb_next
    return tb if start is None else start


def format_worker_traceback(exc: BaseException) -> str:
    """The worker-side traceback of ``exc`` as text, without the library's leading frames.

    Formatted where the failure happened, so ``linecache`` reads the source lines of the files
    the worker ran (the script's own lines too: code sent by value keeps its file name).
    """
    return "".join(traceback.format_exception(type(exc), exc, user_frames(exc.__traceback__)))


# A frame's first line as ``traceback`` formats it (3.10-3.13); inside an exception group its
# lines carry a ``|`` margin.
_FRAME = re.compile(r'([ |]*)File "([^"\n]+)", line (\d+), in ')


def with_source_lines(text: str) -> str:
    """A formatted traceback with source lines, from this process's ``linecache``, added to
    the frames that came without one (their file was not readable where it was formatted)."""
    if "File " not in text:
        return text
    lines = text.splitlines(keepends=True)
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        frame = _FRAME.match(line)
        if frame is None:
            continue
        margin = frame.group(1)
        if i + 1 < len(lines) and lines[i + 1].startswith(margin + "  "):
            continue  # it has its source line
        source = linecache.getline(frame.group(2), int(frame.group(3))).strip()
        if source:
            out.append(f"{margin}  {source}\n")
    return "".join(out)


def runs_functions(cls: type) -> bool:
    """Is ``cls`` a worker whose ``submit(fn, ...)`` runs the caller's function (``TaskWorker``)?"""
    return bool(getattr(cls, "__concurry_runs_functions__", False))


def function_name(fn: Any) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) else repr(fn)


def call_name(cls: type, name: str, args: tuple) -> str:
    """``MyWorker.compute``; for ``TaskWorker.submit(fn, ...)`` the function's own name."""
    if name == "submit" and args and runs_functions(cls):
        return function_name(args[0])
    return f"{cls.__qualname__}.{name}"


def unpicklable_argument(
    cls: type, name: str, args: tuple, culprit: Any, worker: str, exc: Exception
) -> TypeError:
    """The error for a call whose arguments cannot be pickled for process worker ``worker``;
    ``culprit`` is the value that fails. For ``TaskWorker.submit`` the function itself may be it."""
    where = call_name(cls, name, args)
    if name == "submit" and args and culprit is args[0] and runs_functions(cls):
        return TypeError(
            f"{where}: the function cannot be pickled to send it to process worker {worker} (it, or "
            f"something it refers to such as a global or closure variable, cannot be pickled): {exc}"
        )
    kind = type(culprit)
    shown = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return TypeError(
        f"{where}: argument of type {shown} cannot be pickled to send it to process worker {worker}: {exc}"
    )
