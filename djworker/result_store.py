"""Writes to ``TaskResult``: one small function per transition of a task run.

Every writer tolerates a missing row (a message published elsewhere, or with ``ignore_result``)
and a row inserted concurrently by the publisher's still-open transaction, and is retried while
SQLite is busy (``djworker.busy``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from django.db import router
from django.utils import timezone

from djworker import message, result_updates, task_registry
from djworker.busy import retry_when_busy
from djworker.commit import relaxed_commit
from djworker.exceptions import InvalidMessage, TaskRevoked
from djworker.log_safety import get_logger
from djworker.message import Envelope
from djworker.models.results import TaskResult, TaskStatus
from djworker.worker_connections import own_connection

logger = get_logger(__name__)

T = TypeVar("T")


def _retried(write: Callable[[], T], what: str) -> T:
    """``write`` (one whole write, in its own transaction), again while SQLite is busy."""
    return retry_when_busy(write, alias=router.db_for_write(TaskResult), what=what)


def _recorded(write: Callable[[], T], what: str) -> T:
    """A write of the worker's own (not the publisher's): on the slot's own connection.

    Inside a run that is not the task's connection (``djworker.worker_connections``), so the
    write opens no session when ``CONN_MAX_AGE`` is 0 and never joins a transaction the task
    left open.
    """
    alias = router.db_for_write(TaskResult)
    with own_connection(alias):
        return retry_when_busy(write, alias=alias, what=what)


def _row_from(envelope: Envelope, **fields: Any) -> TaskResult:
    return TaskResult(**_fresh_values(envelope, **fields))


def _fresh_values(envelope: Envelope, **fields: Any) -> dict[str, Any]:
    """The fields of the READY row a message stands for; the others keep their defaults."""
    args, kwargs = task_registry.stored_arguments(envelope)
    return {
        "id": envelope["id"],
        "task_name": envelope["task"],
        "args": args,
        "kwargs": kwargs,
        "queue": envelope["queue"],
        "priority": envelope["priority"],
        "enqueued_at": message.parse_time(envelope.get("enqueued_at"), "enqueued_at")
        or timezone.now(),
        "run_after": message.parse_time(envelope.get("eta"), "eta"),
        **fields,
    }


def unsaved_row(envelope: Envelope, **fields: Any) -> TaskResult:
    """The READY row a message stands for, not saved: for a reader that finds none stored."""
    return _row_from(envelope, **fields)


def record_enqueued(envelope: Envelope, **fields: Any) -> bool:
    """Insert the READY row for a fresh call (a retry keeps its row). Returns True."""
    from djworker import ready_rows

    ready_rows.insert_fresh(_fresh_values(envelope, **fields))
    return True


def forget(task_id: str) -> None:
    """Remove the row of a call whose message could not be published."""
    _retried(
        TaskResult.objects.filter(id=task_id, status=TaskStatus.READY).delete,
        f"result id={task_id} forget",
    )


def _write(envelope: Envelope, **fields: Any) -> None:
    """Update the row, inserting it first if the publisher did not (or has not yet)."""
    _recorded(
        lambda: _upsert(envelope, fields),
        f"result id={envelope['id']} status={fields.get('status')}",
    )


def _upsert(envelope: Envelope, fields: dict[str, Any]) -> None:
    alias = router.db_for_write(TaskResult)
    if result_updates.update(alias, envelope["id"], fields):
        return
    created = TaskResult.objects.bulk_create([_row_from(envelope, **fields)], ignore_conflicts=True)
    if not created or created[0].pk is None:
        # Lost a race with the publisher's insert: apply our fields over its READY row.
        result_updates.update(alias, envelope["id"], fields)


def record_started(
    envelope: Envelope,
    *,
    hostname: str,
    started_at: datetime,
    uncounted_before: bool = False,
    **extra: Any,
) -> int:
    """Mark the row RUNNING and count the run; returns how many runs this message started.

    ``extra`` sets more columns (or other values for these) in the same write. Raises
    ``TaskRevoked`` if an operator revoked the task: the check costs nothing on the way of a
    task that was not, since it is part of the same ``UPDATE``.

    ``attempts`` counts every run of the task, ``deliveries`` those of this message (a retry
    is a new message and starts again from 1). ``uncounted_before``: an earlier delivery may
    have run without being counted (an ``ignore_result`` task writes nothing on its first), and
    the broker says there was one, so this run is at least the second.
    """
    fields = {
        "status": TaskStatus.RUNNING,
        "worker_hostname": hostname,
        "started_at": started_at,
        "finished_at": None,
        **extra,
    }
    first = 2 if uncounted_before else 1
    alias = router.db_for_write(TaskResult)

    def write() -> int:
        # The final write of the run follows, so this one need not wait for the disk. The
        # usual case (the publisher stored the READY row) is one statement, in autocommit.
        deliveries = result_updates.update_counting(
            alias, envelope["id"], fields, at_least=first, relaxed=True
        )
        if deliveries is not None:
            return deliveries
        with relaxed_commit():
            _refuse_if_revoked(envelope["id"])
            row = _row_from(
                envelope, **fields, attempts=envelope["attempt"] + first, deliveries=first
            )
            created = TaskResult.objects.bulk_create([row], ignore_conflicts=True)
            if created and created[0].pk is not None:
                return first
            # Lost a race with the publisher's insert: count over its READY row.
            counted = result_updates.update_counting(
                alias, envelope["id"], fields, at_least=first, relaxed=False
            )
            return counted or first

    return _recorded(write, f"result id={envelope['id']} status=RUNNING")


def _refuse_if_revoked(task_id: str) -> None:
    revoked = (
        TaskResult.objects.filter(id=task_id, revoked_at__isnull=False)
        .values_list("revoked_by", "revoked_at")
        .first()
    )
    if revoked is not None:
        who, when = revoked
        at = when.isoformat() if when is not None else "an unknown time"
        raise TaskRevoked(f"revoked by {who or 'an operator'} at {at}")


def record_success(
    envelope: Envelope,
    *,
    value: Any,
    hostname: str,
    started_at: datetime | None,
    cpu_time_s: float | None,
    wall_time_s: float | None,
    **extra: Any,
) -> None:
    _write(
        envelope,
        **{
            "status": TaskStatus.SUCCESSFUL,
            "result": value,
            "exception_class": "",
            "exception_message": "",
            "traceback": "",
            "exit_status": "",  # an earlier run's death is not this run's
            "worker_hostname": hostname,
            "started_at": started_at,
            "finished_at": timezone.now(),
            "cpu_time_s": cpu_time_s,
            "wall_time_s": wall_time_s,
            **extra,
        },
    )


def record_failure(
    envelope: Envelope,
    *,
    exception_class: str,
    exception_message: str,
    traceback: str = "",
    hostname: str = "",
    started_at: datetime | None = None,
    cpu_time_s: float | None = None,
    wall_time_s: float | None = None,
    exit_status: str | None = "",
    will_retry: bool = False,
    new_message: bool = False,
    **extra: Any,
) -> None:
    """FAILED, or READY again with the error kept when ``will_retry``.

    ``new_message``: the retry goes out as a new message, whose deliveries count from zero.
    ``exit_status=None`` keeps the row's (for a failure that ran nothing itself).
    """
    fields: dict[str, Any] = {
        "status": TaskStatus.READY if will_retry else TaskStatus.FAILED,
        "exception_class": exception_class,
        "exception_message": exception_message,
        "traceback": traceback,
        "finished_at": None if will_retry else timezone.now(),
        "cpu_time_s": cpu_time_s,
        "wall_time_s": wall_time_s,
    }
    if exit_status is not None:
        fields["exit_status"] = exit_status
    if new_message:
        fields["deliveries"] = 0
    if hostname:
        fields["worker_hostname"] = hostname
    if started_at:
        fields["started_at"] = started_at
    _write(envelope, **{**fields, **extra})


def run_state(task_id: str) -> tuple[str | None, int]:
    """The row's status if it says the task finished (else None), and its ``deliveries``."""
    with own_connection(router.db_for_read(TaskResult)):
        row = TaskResult.objects.filter(id=task_id).values_list("status", "deliveries").first()
    if row is None:
        return None, 0
    status, deliveries = row
    return (status if status in (TaskStatus.SUCCESSFUL, TaskStatus.FAILED) else None), deliveries


def record_unrecordable(envelope: Envelope, error: BaseException) -> None:
    """Best effort FAILED row for a run whose own bookkeeping failed (the error is logged).

    The arguments are left out: they may be what the result table could not store.
    """
    bare = envelope.copy()
    bare["args"], bare["kwargs"] = [], {}
    try:
        record_failure(
            bare,
            exception_class=type(error).__qualname__,
            exception_message=f"the worker could not record this run: {error}",
        )
    except Exception:
        logger.exception("id=%s could not record the failure either", envelope.get("id"))


def _storable_text(value: Any, longest: int) -> str:
    """``value`` cut to its column, with what the database cannot store replaced."""
    if not isinstance(value, str):
        return ""
    text = value[:longest].replace("\x00", "\ufffd")
    return text.encode("utf-8", "replace").decode("utf-8")


def _storable_time(value: Any) -> str | None:
    try:
        return value if message.parse_time(value, "time") is not None else None
    except InvalidMessage:
        return None


def record_refused(
    envelope_like: Any, *, reason: str, exception_class: str, traceback: str = ""
) -> bool:
    """FAILED row for a message that could not run, when it carries a usable id.

    Never overwrites a finished row, nor the row of another task: a refused message may carry
    any id, including that of a task that already ran. What the table cannot store (arguments
    with a NUL character, NaN, a time out of range) is left out, so the refusal itself can be
    written. Returns False if it could not be written: that is logged, never raised, because
    the message must be refused whether or not its refusal is recorded.
    """
    if not isinstance(envelope_like, dict):
        return False
    task_id = envelope_like.get("id")
    if (
        not isinstance(task_id, str)
        or not task_id
        or len(task_id) > message.MAX_LENGTHS["id"]
        or message.unstorable(task_id) is not None
    ):
        return False
    args, kwargs = envelope_like.get("args"), envelope_like.get("kwargs")
    if not isinstance(args, list) or message.unstorable(args) is not None:
        args = []
    if not isinstance(kwargs, dict) or message.unstorable(kwargs) is not None:
        kwargs = {}
    envelope: Envelope = {
        "v": message.VERSION,
        "id": task_id,
        "task": _storable_text(envelope_like.get("task"), message.MAX_LENGTHS["task"]),
        "args": args,
        "kwargs": kwargs,
        "queue": _storable_text(envelope_like.get("queue"), message.MAX_LENGTHS["queue"]),
        "priority": 0,
        "attempt": 0,
        "eta": _storable_time(envelope_like.get("eta")),
        "enqueued_at": _storable_time(envelope_like.get("enqueued_at")),
    }
    fields = {
        "status": TaskStatus.FAILED,
        "exception_class": exception_class,
        "exception_message": _storable_text(reason, 10_000),
        "traceback": _storable_text(traceback, 100_000),
        "finished_at": timezone.now(),
    }
    unfinished = TaskResult.objects.filter(
        id=task_id, task_name=envelope["task"], status__in=(TaskStatus.READY, TaskStatus.RUNNING)
    )

    def write() -> None:
        if not unfinished.update(**fields):
            TaskResult.objects.bulk_create([_row_from(envelope, **fields)], ignore_conflicts=True)
            # The insert may have lost to the publisher's READY row, inserted meanwhile.
            unfinished.update(**fields)

    try:
        _recorded(write, f"result id={task_id} refused")
        return True
    except Exception:
        logger.exception("id=%s the refusal could not be recorded", task_id)
        return False
