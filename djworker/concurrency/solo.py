"""The solo pool: each task runs inline in the worker's main thread, one at a time.

For one-task-per-container deployments and debugging. The consumer waits while a task runs,
but the worker's control thread does not, so heartbeats and control keep working.
"""

from __future__ import annotations

import contextlib
import threading
from contextlib import AbstractContextManager
from typing import Any

from djworker.concurrency.base import BasePool
from djworker.concurrency.timelimits import alarm_soft_limit
from djworker.job import Job, Limits


class SoloPool(BasePool):
    alias = "solo"
    fixed_size = 1
    blocks_consumer = True
    supports_soft_time_limit = True

    def __init__(self, *, size: int = 1, **kwargs: Any) -> None:
        super().__init__(size=size, **kwargs)
        self._running: Job | None = None

    def start(self) -> None:
        return None

    def stop(self, *, graceful: bool, timeout_s: float | None = None) -> list[Job]:
        return []

    def apply_async(self, job: Job) -> None:
        self._running = job
        try:
            outcome = self.run_job(job)
        finally:
            self._running = None
        self.on_outcome(outcome)

    @property
    def size(self) -> int:
        return 1

    @property
    def busy(self) -> int:
        return 1 if self._running is not None else 0

    def guard(self, limits: Limits) -> AbstractContextManager[object]:
        if limits.soft_s and threading.current_thread() is threading.main_thread():
            return alarm_soft_limit(limits.soft_s)
        return contextlib.nullcontext()
