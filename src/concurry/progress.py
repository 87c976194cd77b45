"""``ProgressBar``: a tqdm bar that is cheap to update and says how things ended.

It wraps ``tqdm.auto.tqdm`` (a console bar in a terminal, tqdm's widget in a notebook). Updates
are counted locally and handed to tqdm at most every ``mininterval`` seconds, so a million
``update(1)`` calls cost little. The bar is blue while running; ``success()``, ``failure()``
and ``stop()`` close it green, red or grey.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["ProgressBar", "check_progress", "progress_bar"]

RUNNING = "blue"
SUCCESS = "green"
FAILURE = "red"
STOPPED = "#808080"  # grey: tqdm takes names or hex


def _tqdm_class() -> type:
    """tqdm's notebook-aware class, imported on first use (``tqdm.auto`` probes for IPython)."""
    global _TQDM
    if _TQDM is None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tqdm.auto warns when ipywidgets is missing
            from tqdm.auto import tqdm

        _TQDM = tqdm
    return _TQDM


_TQDM: type | None = None


class ProgressBar:
    """A progress bar: ``ProgressBar(iterable, desc=...)`` iterates, ``ProgressBar(total=N)`` counts.

    Settings are tqdm's (``desc``, ``unit``, ``leave``, ``disable``, ``position``, ``file``,
    ``mininterval``, ...); ``color``/``colour`` sets the running colour (blue by default).
    The bar is thread-safe: several threads may ``update`` it.
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: float | None = None,
        desc: str | None = None,
        unit: str = "it",
        leave: bool = True,
        disable: bool = False,
        color: str | None = None,
        mininterval: float = 0.1,
        **settings: Any,
    ):
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        colour = color or settings.pop("colour", None) or RUNNING
        self._iterable = iterable
        self._lock = threading.Lock()
        self._pending = 0
        self._interval = mininterval
        self._next_flush = 0.0
        self._closed = False
        self.disable = disable
        self._bar = _tqdm_class()(
            total=total,
            desc=desc,
            unit=unit,
            leave=leave,
            disable=disable,
            colour=colour,
            mininterval=mininterval,
            dynamic_ncols=settings.pop("dynamic_ncols", True),
            **settings,
        )

    # -- counting ---------------------------------------------------------------------------

    def update(self, n: float = 1) -> None:
        """Count ``n`` more items; the display catches up at most every ``mininterval`` seconds."""
        if self.disable:
            return
        with self._lock:
            self._pending += n
            now = time.monotonic()
            if now < self._next_flush:
                return
            self._next_flush = now + self._interval
            pending, self._pending = self._pending, 0
            if not self._closed:
                self._bar.update(pending)

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, 0
            if pending and not self._closed:
                self._bar.update(pending)

    def __iter__(self) -> Iterator[Any]:
        if self._iterable is None:
            raise TypeError("this ProgressBar was made without an iterable; use update() instead")
        finished = False
        try:
            for item in self._iterable:
                yield item
                self.update(1)
            finished = True
        finally:
            if finished:
                self.success()
            elif not self._closed:
                self.stop()

    # -- what the bar shows -----------------------------------------------------------------

    @property
    def tqdm(self) -> Any:
        """The underlying tqdm bar (``tqdm.notebook.tqdm`` in a notebook, ``tqdm.std.tqdm`` elsewhere)."""
        return self._bar

    @property
    def n(self) -> float:
        """Items counted so far (including those not yet drawn)."""
        return self._bar.n + self._pending

    @property
    def total(self) -> float | None:
        return self._bar.total

    @property
    def colour(self) -> str | None:
        return self._bar.colour

    color = colour

    @property
    def desc(self) -> str:
        return self._bar.desc

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self._bar.set_description(desc, refresh=refresh)

    def set_total(self, total: float | None) -> None:
        """Change the total (e.g. once a generator's length is known)."""
        self._bar.total = total
        self._bar.refresh()

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        self._bar.set_postfix(*args, **kwargs)

    # -- ending -----------------------------------------------------------------------------

    def _end(self, colour: str | None) -> None:
        if self._closed:
            return
        self._flush()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if colour is not None:
                self._bar.colour = colour
            self._bar.refresh()
            self._bar.close()

    def success(self) -> None:
        """Everything finished: close the bar in green."""
        self._end(SUCCESS)

    def failure(self) -> None:
        """Something failed: close the bar in red."""
        self._end(FAILURE)

    def stop(self) -> None:
        """Stopped before the end (cancelled, timed out, abandoned): close the bar in grey."""
        self._end(STOPPED)

    def close(self) -> None:
        """Close the bar as it is (same colour), like ``tqdm.close``."""
        self._end(None)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.success()
        else:
            self.failure()

    def __repr__(self) -> str:
        return f"<ProgressBar {self._bar.desc!r} {self.n}/{self.total}>"


def check_progress(progress: Any, where: str) -> None:
    """Validate a ``progress=`` argument up front (before any call is submitted): a bool, None,
    or a dict of settings that ``ProgressBar`` accepts."""
    if progress is None or isinstance(progress, bool):
        return
    if not isinstance(progress, dict):
        raise TypeError(f"{where}: progress must be True, False or a dict of bar settings, got {progress!r}")
    accepted = _accepted_settings()
    unknown = sorted(str(key) for key in progress if key not in accepted)
    if unknown:
        raise ValueError(
            f"{where}: progress settings {unknown} are not accepted; accepted: {', '.join(sorted(accepted))}"
        )


def progress_bar(progress: Any, total: int, desc: str) -> ProgressBar | None:
    """The bar a ``progress=`` argument asks for: none, a default one, or one with the dict's
    settings laid over ``desc``."""
    if not progress:
        return None
    settings = {"desc": desc, **progress} if isinstance(progress, dict) else {"desc": desc}
    return ProgressBar(total=total, **settings)


def _accepted_settings() -> set[str]:
    import inspect

    from tqdm.std import tqdm  # tqdm.auto's class takes (*args, **kwargs): read the base's names

    ours = inspect.signature(ProgressBar.__init__).parameters
    theirs = inspect.signature(tqdm.__init__).parameters
    names = {n for n, p in {**theirs, **ours}.items() if p.kind is not p.VAR_KEYWORD}
    return (names | {"colour"}) - {"self", "iterable", "gui"}
