"""An operator's retry of a finished task: a new message, a new row, lineage both ways.

The new run has the same task, arguments, queue and priority; its row's ``retry_of`` names the
run it retries, and that run's ``retried_as`` names the newest retry. Time limits given to the
original call are not kept in the row, so the task's own (or the worker's) apply.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from djworker.exceptions import OperationRefused, UnknownTask
from djworker.models.results import FINISHED_STATUSES, TaskResult
from djworker.task_definition import REDACTED, get_task


def refusal(row: TaskResult) -> str:
    """Why ``row`` cannot be retried, or "" if it can."""
    if row.status not in FINISHED_STATUSES:
        return f"task {row.id} is {row.status}, not finished; only a finished task can be retried"
    if row.backend:
        return (
            f"task {row.id} was enqueued through django.tasks (backend {row.backend!r}); "
            "enqueue it again there"
        )
    try:
        get_task(row.task_name)
    except UnknownTask:
        return (
            f"task {row.id}: {row.task_name!r} is no longer a registered task in this code, so "
            "there is nothing to run"
        )
    if REDACTED in row.args or REDACTED in row.kwargs.values():
        return (
            f"task {row.id}: its arguments were redacted (redact_args), so they cannot be "
            "sent again"
        )
    return ""


def retry(row: TaskResult) -> str:
    """Publish ``row``'s task again; returns the new task id. ``OperationRefused`` says why not."""
    reason = refusal(row)
    if reason:
        raise OperationRefused(reason)
    task = get_task(row.task_name)
    new_id = str(uuid.uuid4())
    # The old row points forward first: a fast worker may finish the new run before we return.
    TaskResult.objects.filter(id=row.id).update(retried_as=new_id)
    task.apply_async(row.args, row.kwargs, queue=row.queue, priority=row.priority, task_id=new_id)
    # An ignore_result task has no new row: only the forward link says where it went.
    TaskResult.objects.filter(id=new_id).update(retry_of=row.id)
    return new_id


def retry_many(rows: Iterable[TaskResult]) -> tuple[list[str], list[str]]:
    """Retry each row; the new task ids, and one reason per row that was refused."""
    sent, refused = [], []
    for row in rows:
        try:
            sent.append(retry(row))
        except OperationRefused as exc:
            refused.append(str(exc))
    return sent, refused
