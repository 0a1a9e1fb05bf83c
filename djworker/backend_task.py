"""``WorkerTask``: the django.tasks ``Task`` that ``WorkerBackend`` makes, with djworker's extras.

``@task(max_retries=3, time_limit=30, redact_args=True)`` passes the extras through
``task_class`` (Django 6.1 and the backport; on Django 6.0 ``@task`` takes no extras and every
one keeps its default). The
extras mean what they mean on ``@djworker.task``, except that a django.tasks task is not retried
unless ``max_retries`` says so: Django's own backends never retry.

Also here: how Django's priorities (-100..100) map onto the broker's levels (0..9).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from djworker import message
from djworker.tasks_framework import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, Task

_LEVELS = message.MAX_PRIORITY - message.MIN_PRIORITY + 1
_SPAN = TASK_MAX_PRIORITY - TASK_MIN_PRIORITY + 1


def broker_priority(priority: float) -> int:
    """The broker level (0..9, higher first) for a django.tasks priority (-100..100).

    The range is cut into ten bands of 20 or 21 values, in order, so a higher django.tasks
    priority never runs after a lower one: -100..-81 -> 0, ..., -20..0 -> 4, 1..20 -> 5, ...,
    81..100 -> 9.
    """
    return message.MIN_PRIORITY + (int(priority) - TASK_MIN_PRIORITY) * _LEVELS // _SPAN


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WorkerTask(Task):  # type: ignore[type-arg]
    """A django.tasks ``Task`` with djworker's per-task options.

    ``max_retries``: how many times a run that raised an ``Exception`` (of ``autoretry_for``)
    runs again; 0 (the default) never retries, None retries without end. ``retry_backoff``,
    ``retry_backoff_max``, ``retry_jitter`` and ``default_retry_delay`` space the retries as on
    ``@djworker.task``; ``time_limit`` and ``soft_time_limit`` are seconds. ``redact_args``
    stores every argument value as ``"[redacted]"`` in the result row (the task still gets
    them); ``max_deliveries`` caps the deliveries of one message whose runs keep dying (None:
    the worker's ``--max-deliveries``, 0: no cap).
    """

    max_retries: int | None = 0
    autoretry_for: tuple[type[BaseException], ...] = (Exception,)
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600.0
    retry_jitter: bool = True
    default_retry_delay: float = 180.0
    time_limit: float | None = None
    soft_time_limit: float | None = None
    redact_args: bool = False
    max_deliveries: int | None = None


#: the extras a ``WorkerTask`` adds, passed on to djworker's own ``Task``
EXTRAS = (
    "max_retries",
    "autoretry_for",
    "retry_backoff",
    "retry_backoff_max",
    "retry_jitter",
    "default_retry_delay",
    "time_limit",
    "soft_time_limit",
    "redact_args",
    "max_deliveries",
)


def extras_of(task: Any) -> dict[str, Any]:
    """The djworker options of a django.tasks task (the defaults for a plain ``Task``)."""
    options = {name: getattr(task, name, None) for name in EXTRAS}
    defaults = {f.name: f.default for f in dataclasses.fields(WorkerTask) if f.name in EXTRAS}
    for name in EXTRAS:
        if not hasattr(task, name):
            options[name] = defaults[name]
    if options["max_retries"] == 0:
        options["autoretry_for"] = ()
    return options
