"""The library's own exception types. Everything else uses the standard types."""

from __future__ import annotations


class WorkerCrashedError(RuntimeError):
    """The worker's process or actor died while calls were in flight (or before a call)."""


class WorkerStoppedError(RuntimeError):
    """A method was called on a worker (or pool) after ``stop()``."""


class RetryValidationError(Exception):
    """Every attempt ran, but the last one's result was rejected by ``retry_until``.

    ``results`` holds each attempt's result, ``validation_errors`` the validators that failed.
    """

    def __init__(self, message: str, results: list | None = None, validation_errors: list | None = None):
        super().__init__(message)
        self.results = list(results or [])
        self.validation_errors = list(validation_errors or [])

    def __reduce__(self):
        return (type(self), (self.args[0], self.results, self.validation_errors))
