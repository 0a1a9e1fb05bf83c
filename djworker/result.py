"""``AsyncResult``: a handle on one task run, read from its ``TaskResult`` row."""

from __future__ import annotations

import time
from typing import Any

from djworker.exceptions import ResultTimeout, TaskFailed
from djworker.models.results import FINISHED_STATUSES, TaskResult, TaskStatus
from djworker.models.workers import ControlCommand, request_termination
from djworker.task_progress import Progress


class AsyncResult:
    """What ``delay()``/``apply_async()`` return. Every property reads the database afresh."""

    def __init__(self, id: str) -> None:
        self.id = id

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def _row(self) -> TaskResult | None:
        return TaskResult.objects.filter(id=self.id).first()

    @property
    def status(self) -> str:
        """READY, RUNNING, SUCCESSFUL or FAILED (READY also while no row exists yet)."""
        row = self._row()
        return row.status if row else TaskStatus.READY

    @property
    def result(self) -> Any:
        """The return value once SUCCESSFUL, else None."""
        row = self._row()
        return row.result if row and row.status == TaskStatus.SUCCESSFUL else None

    @property
    def traceback(self) -> str:
        row = self._row()
        return row.traceback if row else ""

    @property
    def progress(self) -> Progress | None:
        """The latest progress the task reported with ``djworker.progress()``, if any."""
        row = (
            TaskResult.objects.filter(id=self.id)
            .values_list("progress_done", "progress_total", "progress_note", "progress_at")
            .first()
        )
        if row is None or row[0] is None:
            return None
        return Progress(done=row[0], total=row[1], note=row[2], at=row[3])

    def ready(self) -> bool:
        return self.status in FINISHED_STATUSES

    def successful(self) -> bool:
        return self.status == TaskStatus.SUCCESSFUL

    def failed(self) -> bool:
        return self.status == TaskStatus.FAILED

    def terminate(self, *, requested_by: Any = None) -> ControlCommand:
        """Stop this task where it runs now (prefork, gevent and eventlet pools).

        Like Celery's ``revoke(terminate=True)`` for a task that has started: the worker
        running it kills its slot within a control tick and records the result FAILED
        (``Terminated``). Returns the ``ControlCommand`` whose status and message give the
        outcome; raises ``ValueError`` if the task is not running on a live worker.
        """
        return request_termination(self.id, requested_by=requested_by)

    def get(self, timeout: float | None = None, interval: float = 0.05) -> Any:
        """Wait for the task to finish; return its value or raise ``TaskFailed``.

        Raises ``ResultTimeout`` if ``timeout`` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            row = self._row()
            if row is not None and row.status == TaskStatus.SUCCESSFUL:
                return row.result
            if row is not None and row.status == TaskStatus.FAILED:
                raise TaskFailed(self.id, row.exception_class, row.exception_message, row.traceback)
            if deadline is not None and time.monotonic() >= deadline:
                state = row.status if row else "no result row yet"
                raise ResultTimeout(f"task {self.id} did not finish within {timeout}s ({state})")
            time.sleep(interval)
