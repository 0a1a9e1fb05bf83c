"""Writes to ``TaskResult``: one small function per transition of a task run.

Every writer tolerates a missing row (a message published elsewhere, or with ``ignore_result``)
and a row inserted concurrently by the publisher's still-open transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db.models import F
from django.utils import timezone

from djworker import message
from djworker.commit import relaxed_commit
from djworker.models.results import TaskResult, TaskStatus

logger = logging.getLogger(__name__)


def _row_from(envelope: dict[str, Any], **fields: Any) -> TaskResult:
    from djworker.task_definition import stored_arguments

    args, kwargs = stored_arguments(envelope)
    return TaskResult(
        id=envelope["id"],
        task_name=envelope["task"],
        args=args,
        kwargs=kwargs,
        queue=envelope["queue"],
        priority=envelope["priority"],
        enqueued_at=message.parse_time(envelope.get("enqueued_at"), "enqueued_at")
        or timezone.now(),
        run_after=message.parse_time(envelope.get("eta"), "eta"),
        **fields,
    )


def record_enqueued(envelope: dict[str, Any]) -> bool:
    """Insert the READY row for a fresh call (a retry keeps its row). Returns True."""
    TaskResult.objects.bulk_create([_row_from(envelope)], ignore_conflicts=True)
    return True


def forget(task_id: str) -> None:
    """Remove the row of a call whose message could not be published."""
    TaskResult.objects.filter(id=task_id, status=TaskStatus.READY).delete()


def _write(envelope: dict[str, Any], *, count_run: bool = False, **fields: Any) -> None:
    """Update the row, inserting it first if the publisher did not (or has not yet).

    ``count_run`` adds one to ``attempts`` in the database, so a redelivered message (whose
    envelope still says attempt 0) is counted too.
    """
    update = {**fields, "attempts": F("attempts") + 1} if count_run else fields
    if TaskResult.objects.filter(id=envelope["id"]).update(**update):
        return
    first = {"attempts": envelope["attempt"] + 1} if count_run else {}
    created = TaskResult.objects.bulk_create(
        [_row_from(envelope, **fields, **first)], ignore_conflicts=True
    )
    if not created or created[0].pk is None:
        # Lost a race with the publisher's insert: apply our fields over its READY row.
        TaskResult.objects.filter(id=envelope["id"]).update(**update)


def record_started(envelope: dict[str, Any], *, hostname: str, started_at: datetime) -> None:
    # The final write of the run follows, so this one need not wait for the disk.
    with relaxed_commit():
        _write(
            envelope,
            status=TaskStatus.RUNNING,
            worker_hostname=hostname,
            started_at=started_at,
            finished_at=None,
            count_run=True,
        )


def record_success(
    envelope: dict[str, Any],
    *,
    value: Any,
    hostname: str,
    started_at: datetime | None,
    cpu_time_s: float | None,
    wall_time_s: float | None,
) -> None:
    _write(
        envelope,
        status=TaskStatus.SUCCESSFUL,
        result=value,
        exception_class="",
        exception_message="",
        traceback="",
        exit_status="",  # an earlier run's death is not this run's
        worker_hostname=hostname,
        started_at=started_at,
        finished_at=timezone.now(),
        cpu_time_s=cpu_time_s,
        wall_time_s=wall_time_s,
    )


def record_failure(
    envelope: dict[str, Any],
    *,
    exception_class: str,
    exception_message: str,
    traceback: str = "",
    hostname: str = "",
    started_at: datetime | None = None,
    cpu_time_s: float | None = None,
    wall_time_s: float | None = None,
    exit_status: str = "",
    will_retry: bool = False,
) -> None:
    """FAILED, or READY again with the error kept when ``will_retry``."""
    fields: dict[str, Any] = {
        "status": TaskStatus.READY if will_retry else TaskStatus.FAILED,
        "exception_class": exception_class,
        "exception_message": exception_message,
        "traceback": traceback,
        "exit_status": exit_status,
        "finished_at": None if will_retry else timezone.now(),
        "cpu_time_s": cpu_time_s,
        "wall_time_s": wall_time_s,
    }
    if hostname:
        fields["worker_hostname"] = hostname
    if started_at:
        fields["started_at"] = started_at
    _write(envelope, **fields)


def finished_status(task_id: str) -> str | None:
    """SUCCESSFUL or FAILED if the task's row says it finished, else None."""
    status = TaskResult.objects.filter(id=task_id).values_list("status", flat=True).first()
    return status if status in (TaskStatus.SUCCESSFUL, TaskStatus.FAILED) else None


def record_unrecordable(envelope: dict[str, Any], error: BaseException) -> None:
    """Best effort FAILED row for a run whose own bookkeeping failed (the error is logged).

    The arguments are left out: they may be what the result table could not store.
    """
    bare = {**envelope, "args": [], "kwargs": {}}
    try:
        record_failure(
            bare,
            exception_class=type(error).__qualname__,
            exception_message=f"the worker could not record this run: {error}",
        )
    except Exception:
        logger.exception("id=%s could not record the failure either", envelope.get("id"))


def record_refused(envelope_like: Any, *, reason: str, exception_class: str) -> None:
    """FAILED row for a message that could not run, when it carries a usable id."""
    if not isinstance(envelope_like, dict):
        return
    task_id = envelope_like.get("id")
    if not isinstance(task_id, str) or not task_id or len(task_id) > message.MAX_LENGTHS["id"]:
        return
    name = envelope_like.get("task")
    queue = envelope_like.get("queue")
    envelope: dict[str, Any] = {
        "id": task_id,
        # A refused message may name anything: cut it to the column, or the write would fail.
        "task": name[: message.MAX_LENGTHS["task"]] if isinstance(name, str) else "",
        "args": envelope_like.get("args") if isinstance(envelope_like.get("args"), list) else [],
        "kwargs": envelope_like.get("kwargs")
        if isinstance(envelope_like.get("kwargs"), dict)
        else {},
        "queue": queue[: message.MAX_LENGTHS["queue"]] if isinstance(queue, str) else "",
        "priority": 0,
        "attempt": 0,
    }
    record_failure(envelope, exception_class=exception_class, exception_message=reason)
