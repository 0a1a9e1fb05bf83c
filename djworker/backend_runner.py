"""Running a django.tasks task in a worker: its entry in djworker's task registry.

``WorkerBackend.validate_task`` registers every django.tasks task it accepts, under its
``module_path``, as a ``FrameworkTask``. Validation happens when the task is defined, i.e. when
``AppConfig.ready()`` autodiscovers the app's ``tasks.py``, so a worker knows the same tasks as
for ``@djworker.task`` and never imports a path taken from a message.

A ``FrameworkTask`` is a djworker ``Task``: the consumer, the pools, ``execute()``, retries,
limits and controls treat it like any other. It overrides only how a run is called and recorded,
to keep the django.tasks fields (``worker_ids``, ``errors``, ``last_attempted_at``, the first
``started_at``) and to send Django's ``task_started`` / ``task_finished`` signals, with the
backend class as sender, after each write.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from django.db import DatabaseError
from django.utils import timezone

from djworker import message, result_store, signals
from djworker.backend_results import error_entry, task_for_row, to_task_result, update
from djworker.backend_task import broker_priority, extras_of
from djworker.conf import default_hostname
from djworker.exceptions import ConfigurationError
from djworker.models.results import TaskResult as ResultRow
from djworker.models.results import TaskStatus
from djworker.task_definition import Task as NativeTask
from djworker.task_definition import registry
from djworker.tasks_framework import (
    InvalidTask,
    InvalidTaskBackend,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    normalize_json,
    task_finished,
    task_started,
)

logger = logging.getLogger(__name__)


def register(task: Task) -> None:  # type: ignore[type-arg]
    """Make ``task`` runnable by workers; raise ``InvalidTask`` if djworker cannot run it."""
    name = task.module_path
    existing = registry.get(name)
    if isinstance(existing, FrameworkTask) and existing.task.func is task.func:
        return
    if existing is not None and not isinstance(existing, FrameworkTask):
        raise InvalidTask(
            f"Task name {name!r} is already used by @djworker.task "
            f"{existing.func.__module__}.{existing.func.__qualname__}."
        )
    if len(name) > message.MAX_LENGTHS["task"]:
        raise InvalidTask(
            f"Task path {name[:80]!r}... is {len(name)} characters long; "
            f"at most {message.MAX_LENGTHS['task']} are allowed."
        )
    try:
        registry[name] = FrameworkTask(task)
    except ConfigurationError as exc:
        raise InvalidTask(str(exc)) from None


def send(signal: Any, result: TaskResult) -> None:  # type: ignore[type-arg]
    """Send a django.tasks signal as Django does (sender: the backend class), robustly.

    A receiver that raises is logged and changes nothing: the outcome is already stored.
    """
    try:
        sender: Any = type(result.task.get_backend())
    except InvalidTaskBackend:
        from djworker.backend import WorkerBackend

        sender = WorkerBackend
    signals.send_robust(signal, sender, task_result=result)


class FrameworkTask(NativeTask[Any, Any]):
    """The registry entry for a django.tasks ``Task`` (``self.task``)."""

    def __init__(self, task: Task) -> None:  # type: ignore[type-arg]
        super().__init__(
            task.func,
            name=task.module_path,
            priority=broker_priority(task.priority),
            **extras_of(task),
        )
        self.task = task
        # The live TaskResult of each run in this process, from its start to its end: the
        # context a task receives, and what the signals carry. Keyed by result id.
        self._runs: dict[str, TaskResult] = {}  # type: ignore[type-arg]

    def __repr__(self) -> str:
        return f"<FrameworkTask {self.name}>"

    # -- the run ---------------------------------------------------------------------------

    def invoke(self, envelope: dict[str, Any]) -> Any:
        args, kwargs = envelope["args"], envelope["kwargs"]
        result = self._runs.get(envelope["id"]) or self._load(envelope)
        # Sent here, right before the function, so a delivery refused after its RUNNING write
        # (over its delivery cap) sends no task_started.
        send(task_started, result)
        if self.task.takes_context:
            value = self.task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = self.task.call(*args, **kwargs)
        # As Django's own executor does: a value JSON cannot carry fails the run, here.
        return normalize_json(value)

    def record_started(
        self,
        envelope: dict[str, Any],
        *,
        hostname: str,
        started_at: datetime,
        redelivered: bool = False,
        **counting: Any,
    ) -> int:
        # The first run of a fresh call finds no earlier start, worker or error in its row: the
        # message says all the row would, so it is not read (a round trip per task saved).
        fresh = envelope["attempt"] == 0 and not redelivered and "django_task" in envelope
        row = self._message_row(envelope) if fresh else self._row(envelope)
        first_start = row.started_at or started_at
        worker_ids = [*(row.worker_ids or []), hostname or default_hostname()]
        deliveries = result_store.record_started(
            envelope,
            hostname=hostname,
            started_at=first_start,
            last_attempted_at=started_at,
            **counting,
            worker_ids=worker_ids,
        )
        row.status = TaskStatus.RUNNING
        row.started_at, row.last_attempted_at = first_start, started_at
        row.worker_ids, row.finished_at = worker_ids, None
        self._runs[envelope["id"]] = self._result(row)
        return deliveries

    def record_success(self, envelope: dict[str, Any], *, value: Any, **fields: Any) -> None:
        result = self._runs.pop(envelope["id"], None) or self._load(envelope)
        finished_at = timezone.now()
        result_store.record_success(
            envelope,
            value=value,
            **{**fields, "started_at": result.started_at, "finished_at": finished_at},
        )
        # What a reader of the row gets (JSON turns every key into a string).
        stored = json.loads(json.dumps(value)) if isinstance(value, dict | list) else value
        update(
            result,
            status=TaskStatus.SUCCESSFUL,
            finished_at=finished_at,
            _return_value=stored,
        )
        send(task_finished, result)

    def record_failure(
        self, envelope: dict[str, Any], *, error: BaseException | None, **fields: Any
    ) -> None:
        result = self._runs.pop(envelope["id"], None) or self._load(envelope)
        entry = error_entry(
            error,
            exception_class=fields.get("exception_class", ""),
            message=fields.get("exception_message", ""),
        )
        errors = [
            *(
                {"exception_class_path": e.exception_class_path, "traceback": e.traceback}
                for e in result.errors
            ),
            entry,
        ]
        will_retry = bool(fields.get("will_retry"))
        finished_at = None if will_retry else timezone.now()
        if fields.get("started_at") is not None:
            fields["started_at"] = result.started_at
        result_store.record_failure(envelope, **fields, errors=errors, finished_at=finished_at)
        update(
            result,
            status=TaskStatus.READY if will_retry else TaskStatus.FAILED,
            finished_at=finished_at,
            errors=[TaskError(**e) for e in errors],
        )
        if not will_retry:
            send(task_finished, result)

    # -- reading the row -------------------------------------------------------------------

    def _message_row(self, envelope: dict[str, Any]) -> ResultRow:
        """The row as the message describes it, unsaved."""
        framework = envelope.get("django_task") or {}
        return result_store.unsaved_row(
            envelope,
            backend=framework.get("backend", self.task.backend),
            task_priority=framework.get("priority"),
        )

    def _row(self, envelope: dict[str, Any]) -> ResultRow:
        """The stored row, or an unsaved one made from the message if there is none yet."""
        try:
            row = ResultRow.objects.filter(id=envelope["id"]).first()
        except DatabaseError:
            logger.warning("id=%s could not read its result row", envelope["id"], exc_info=True)
            row = None
        return row if row is not None else self._message_row(envelope)

    def _result(self, row: ResultRow) -> TaskResult:  # type: ignore[type-arg]
        try:
            task = task_for_row(self.task, row)
        except (InvalidTask, InvalidTaskBackend) as exc:
            # The row names a backend alias or queue this process does not accept: the run
            # goes on with the task as registered rather than failing on bookkeeping.
            logger.warning("id=%s result shown with the registered task: %s", row.id, exc)
            task = self.task
        return to_task_result(row, task)

    def _load(self, envelope: dict[str, Any]) -> TaskResult:  # type: ignore[type-arg]
        return self._result(self._row(envelope))
