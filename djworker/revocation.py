"""Revoking a task that has not started: its row says so, and no worker will run it.

The row is the revocation: a worker marks a row RUNNING with an ``UPDATE`` that skips revoked
rows (``result_store.record_started``), so a revoked task is refused by every worker, including
one started after the revoke, and the check costs the others nothing. Its message is then
acknowledged and dropped. The status is FAILED (the closest of the four statuses django.tasks
knows) with ``exception_class`` ``TaskRevoked``, ``revoked_at`` and ``revoked_by``.
"""

from __future__ import annotations

from django.utils import timezone

from djworker.exceptions import OperationRefused, UnknownTask
from djworker.log_safety import get_logger
from djworker.models.results import TaskResult, TaskStatus

logger = get_logger(__name__)

REVOKED_CLASS = "TaskRevoked"


def revoke(task_id: str, *, by: str) -> TaskResult:
    """Revoke a waiting (READY) task; ``OperationRefused`` says why one cannot be.

    Revoking a task that is already revoked changes nothing and returns its row.
    """
    now = timezone.now()
    revoked = TaskResult.objects.filter(
        id=task_id, status=TaskStatus.READY, revoked_at__isnull=True
    ).update(
        status=TaskStatus.FAILED,
        exception_class=REVOKED_CLASS,
        exception_message=f"revoked by {by} before it ran",
        traceback="",
        revoked_at=now,
        revoked_by=by[:150],
        finished_at=now,
    )
    row = TaskResult.objects.filter(id=task_id).first()
    if row is None:
        raise OperationRefused(
            f"no task with id {task_id!r} (a task with ignore_result has no row to revoke)"
        )
    if revoked and row.backend:
        # A django.tasks call ends here, not in a worker: its task_finished is sent here.
        _send_finished(row)
    if revoked or row.revoked_at is not None:
        return row
    if row.status == TaskStatus.RUNNING:
        raise OperationRefused(
            f"task {task_id} is running on {row.worker_hostname or 'a worker'}: terminate it "
            "instead (admin action, or AsyncResult(id).terminate())"
        )
    raise OperationRefused(f"task {task_id} already finished ({row.status}); nothing to revoke")


def _send_finished(row: TaskResult) -> None:
    """``task_finished`` for a django.tasks call that ended without a run (revoked)."""
    # Local: django.tasks and its modules are imported only for a row that has a backend.
    from djworker.backend_results import to_task_result
    from djworker.backend_runner import send
    from djworker.task_lookup import framework_task
    from djworker.tasks_framework import task_finished

    try:
        registered = framework_task(row.task_name)
    except UnknownTask as exc:
        logger.warning("id=%s ended, task_finished not sent: %s", row.id, exc)
        return
    send(
        task_finished,
        to_task_result(row, registered.task_for_row(row)),
        fallback_sender=registered.fallback_sender,
    )
