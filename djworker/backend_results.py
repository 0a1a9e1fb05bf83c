"""djworker's ``TaskResult`` row, seen as a django.tasks ``TaskResult``.

One row serves both APIs. The mapping:

* ``status``: the same four values (READY also while a retry waits);
* ``enqueued_at``, ``started_at`` (the first run's start), ``finished_at``, ``last_attempted_at``,
  ``args``, ``kwargs``, ``worker_ids``, ``backend``: their columns;
* ``errors``: the ``errors`` column, one entry per failed run; a row that failed without
  running (an unknown task, an expired message, a lost slot) has only ``exception_class`` and
  ``traceback``, and gives one ``TaskError`` made from them;
* ``return_value``: the ``result`` column once SUCCESSFUL;
* ``task``: the registered django.tasks ``Task`` with the row's priority, queue, ``run_after``
  and backend alias (``FrameworkTask.task_for_row``).
"""

from __future__ import annotations

import builtins
import traceback as traceback_module
from typing import Any

from djworker import exceptions
from djworker.models.results import TaskResult as ResultRow
from djworker.tasks_framework import (
    Task,
    TaskError,
    TaskResult,
    TaskResultStatus,
    exception_class_path,
)


def error_entry(
    error: BaseException | None, *, exception_class: str, message: str
) -> dict[str, str]:
    """One ``errors`` entry: the exception's class path and its formatted traceback."""
    if error is not None:
        return {
            "exception_class_path": exception_class_path(error),
            "traceback": "".join(traceback_module.format_exception(error)),
        }
    path = class_path(exception_class)
    return {"exception_class_path": path, "traceback": f"{path}: {message}\n"}


def class_path(name: str) -> str:
    """The dotted path for an exception class name djworker records (``WorkerLost``...)."""
    if "." in name:
        return name
    if hasattr(exceptions, name):
        return f"{exceptions.__name__}.{name}"
    if isinstance(getattr(builtins, name, None), type):
        return f"builtins.{name}"
    return name


def errors_of(row: ResultRow) -> list[TaskError]:
    errors = [
        TaskError(exception_class_path=e["exception_class_path"], traceback=e["traceback"])
        for e in row.errors or []
    ]
    if not errors and row.status == TaskResultStatus.FAILED and row.exception_class:
        entry = error_entry(
            None, exception_class=row.exception_class, message=row.exception_message
        )
        errors.append(
            TaskError(**(entry | ({"traceback": row.traceback} if row.traceback else {})))
        )
    return errors


def to_task_result(row: ResultRow, task: Task) -> TaskResult:  # type: ignore[type-arg]
    """The django.tasks ``TaskResult`` for a row and the task as its call used it."""
    result: TaskResult = TaskResult(  # type: ignore[type-arg]
        task=task,
        id=row.id,
        status=TaskResultStatus(row.status),
        enqueued_at=row.enqueued_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        last_attempted_at=row.last_attempted_at,
        args=row.args,
        kwargs=row.kwargs,
        backend=row.backend or task.backend,
        errors=errors_of(row),
        worker_ids=list(row.worker_ids or []),
    )
    if row.status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", row.result)
    return result


def update(result: Any, **changes: Any) -> None:
    """Change a (frozen) ``TaskResult`` in place, as Django's own backends do."""
    for name, value in changes.items():
        object.__setattr__(result, name, value)
