"""djworker: a managed background-task worker for Django.

Public surface: ``task`` (the decorator), ``Task``, ``AsyncResult``, ``Arguments`` (one call
of ``Task.enqueue_many``), ``progress`` (called inside a running task) and ``__version__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Arguments", "AsyncResult", "Task", "__version__", "progress", "task"]

if TYPE_CHECKING:
    from djworker.bulk_publish import Arguments
    from djworker.result import AsyncResult
    from djworker.task_definition import Task, task
    from djworker.task_progress import progress


def __getattr__(name: str) -> Any:
    # Lazy, so importing djworker (e.g. from settings or manage.py) imports neither Django
    # models nor kombu before they are needed.
    if name in ("task", "Task"):
        # The module is not called ``task`` so that ``djworker.task`` stays the decorator.
        from djworker import task_definition

        return getattr(task_definition, name)
    if name == "progress":
        from djworker.task_progress import progress

        # Kept here: tasks call it in loops, and this hook runs on every missing attribute.
        globals()["progress"] = progress
        return progress
    if name == "Arguments":
        from djworker.bulk_publish import Arguments

        return Arguments
    if name == "AsyncResult":
        from djworker.result import AsyncResult

        return AsyncResult
    raise AttributeError(f"module 'djworker' has no attribute {name!r}")
