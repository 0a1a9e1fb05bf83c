"""Every error djworker raises on purpose, under one root.

Configuration mistakes are also ``ImproperlyConfigured`` so Django tooling treats them as such;
what a running worker refuses to do is an ``OperationRefused`` instead.
Messages name the bad value and what is allowed.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from django.core.exceptions import ImproperlyConfigured

# What ``PublishInterrupted.results`` holds: ``djworker.result.AsyncResult``, named by a type
# variable so that this module, which every other one imports, imports none of them.
ResultT = TypeVar("ResultT")


class DjworkerError(Exception):
    """Root of djworker's own errors."""


class ConfigurationError(DjworkerError, ImproperlyConfigured):
    """A setting, option or environment variable has a value djworker cannot use."""


class PoolNotAvailable(ConfigurationError):
    """The chosen pool is unknown, or its package is not installed."""


class InvalidMessage(DjworkerError):
    """A broker message is not a djworker envelope this version can run."""


class UnknownTask(DjworkerError):
    """A message or call names a task that is not registered in this process."""


class NotSupportedByPool(DjworkerError):
    """The pool does not offer this operation (see its capability flags)."""


class TaskFailed(DjworkerError):
    """Raised by ``AsyncResult.get()`` when the task ended FAILED.

    Carries the class name, message and traceback the worker recorded.
    """

    def __init__(self, task_id: str, exception_class: str, message: str, traceback: str) -> None:
        super().__init__(f"task {task_id} failed: {exception_class}: {message}")
        self.task_id = task_id
        self.exception_class = exception_class
        self.message = message
        self.traceback = traceback


class ResultTimeout(DjworkerError, TimeoutError):
    """``AsyncResult.get(timeout=...)`` ran out of time before the task finished."""


class OperationRefused(DjworkerError):
    """An operator's retry, revoke or control command that cannot be done; the message says why.

    A refusal at run time, not a configuration mistake: nothing about the settings is wrong.
    """


class CommandRefused(OperationRefused):
    """A control command the running worker cannot carry out (a pool that cannot resize or
    terminate, a size out of bounds, an unknown action); the command row is FAILED with this
    message."""


class PublishInterrupted(DjworkerError, Generic[ResultT]):
    """Publishing many calls stopped at a failure (its cause): the first ``published`` went out.

    ``results`` holds the ``AsyncResult`` of every call, in order: ``results[:published]`` were
    published, the rest were not and left no result row.
    """

    def __init__(
        self, message: str, *, published: int, results: list[ResultT] | None = None
    ) -> None:
        super().__init__(message)
        self.published = published
        self.results: list[ResultT] = results or []


class TaskRevoked(DjworkerError):
    """Raised in a worker that was about to run a task an operator revoked."""


class SoftTimeLimitExceeded(Exception):
    """Raised inside a task when its soft time limit passes, so it can clean up."""


class TimeLimitExceeded(Exception):
    """Recorded when a task ran past its hard time limit and was stopped."""


class Terminated(Exception):
    """Recorded when an operator terminated a running task (admin action or ``terminate()``)."""


class WorkerLost(Exception):
    """Recorded when the process running a task died before reporting an outcome."""


class TaskExpired(Exception):
    """Recorded when a message arrives after its ``expires`` time; the task is not run."""


class DeliveryLimitExceeded(Exception):
    """Recorded when a message started ``max_deliveries`` runs and none finished; not run again."""
