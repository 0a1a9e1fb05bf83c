"""Progress a running task reports: ``djworker.progress(done, total, note)``.

Cheap enough to call in a tight loop: a call is a clock read and a comparison, and the row is
written at most every ``WRITE_EVERY_S`` seconds, the first time only once the run has lasted
that long. A task shorter than that never writes progress at all, so reporting costs a short
task nothing measurable (``benchmarks/progress_overhead.py``). The latest value is read with
``AsyncResult(id).progress``; the admin shows it as a bar on running tasks.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from djworker.log_safety import get_logger

logger = get_logger(__name__)

WRITE_EVERY_S = 0.5
NOTE_MAX_CHARS = 200


@dataclass
class _Run:
    task_id: str
    next_write: float


@dataclass(frozen=True)
class Progress:
    """The latest progress a task reported."""

    done: int
    total: int | None
    note: str
    at: datetime | None

    @property
    def fraction(self) -> float | None:
        """``done / total`` between 0 and 1, or None without a total."""
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))


_current: contextvars.ContextVar[_Run | None] = contextvars.ContextVar(
    "djworker_progress", default=None
)


@contextmanager
def running(task_id: str) -> Iterator[None]:
    """Make ``progress()`` report for ``task_id`` inside this block (``execute`` uses it)."""
    token = _current.set(_Run(task_id, time.monotonic() + WRITE_EVERY_S))
    try:
        yield
    finally:
        _current.reset(token)


def progress(done: int, total: int | None = None, note: str = "") -> None:
    """Report how far the running task got; outside a task it does nothing.

    ``done`` and ``total`` are whole numbers (``total`` may be None when unknown); ``note`` is
    cut to 200 characters. A failed write is logged, never raised into the task.
    """
    run = _current.get()
    if run is None:
        return
    now = time.monotonic()
    if now < run.next_write:
        return
    run.next_write = now + WRITE_EVERY_S
    from djworker.models.results import TaskResult

    try:
        TaskResult.objects.filter(id=run.task_id).update(
            progress_done=int(done),
            progress_total=None if total is None else int(total),
            progress_note=str(note)[:NOTE_MAX_CHARS],
            progress_at=timezone.now(),
        )
    except Exception:
        logger.warning("id=%s could not write its progress", run.task_id, exc_info=True)
