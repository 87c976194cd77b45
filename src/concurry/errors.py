"""The library's own exception types. Everything else uses the standard types."""

from __future__ import annotations

from typing import Any


class WorkerCrashedError(RuntimeError):
    """The worker's process or actor died while calls were in flight (or before a call)."""


class WorkerStoppedError(RuntimeError):
    """A method was called on a worker (or pool) after ``stop()``."""


class RetryValidationError(Exception):
    """Every attempt ran, and the last one returned a result that ``retry_until`` rejected.

    ``results`` holds the result of every attempt that returned one, in order (attempts that
    raised a retried exception have none); ``validation_errors`` names the validators that
    rejected the last result; ``attempts`` is how many attempts ran; ``method_name`` is the
    method (or function) called.
    """

    def __init__(
        self,
        message: str,
        results: list[Any] | None = None,
        validation_errors: list[str] | None = None,
        attempts: int | None = None,
        method_name: str | None = None,
    ):
        super().__init__(message)
        self.results = list(results or [])
        self.validation_errors = list(validation_errors or [])
        self.attempts = len(self.results) if attempts is None else attempts
        self.method_name = method_name

    @property
    def last_result(self) -> Any:
        """The result of the last attempt (the one the validators named here rejected)."""
        return self.results[-1] if self.results else None

    def __reduce__(self):
        args = (self.args[0], self.results, self.validation_errors, self.attempts, self.method_name)
        return (type(self), args, self.__dict__)
