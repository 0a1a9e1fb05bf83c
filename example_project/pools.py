"""Example custom pools, each chosen by its dotted path: ``runworker --pool=module:Class``.

``LoggingThreadPool`` is the smallest: djworker's threads pool, logging each job it is handed.
Adding it touched this file only; no registry, setting, migration or message had to change.

``ExecutorPool`` is written from scratch: ``runworker --pool=example_project.pools:ExecutorPool``.
It runs jobs on a ``concurrent.futures.ThreadPoolExecutor``. A custom pool subclasses
``BasePool``, implements its abstract methods, and claims only the capabilities it has: this
one cannot change size, enforce time limits or stop a running task, so it leaves those flags
False and the base class refuses those operations with ``NotSupportedByPool``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.db import connections

from djworker.concurrency.base import BasePool
from djworker.concurrency.threads import ThreadPool
from djworker.job import Job

# Under djworker's logger, so these lines show with the worker's own, at its --loglevel.
logger = logging.getLogger("djworker.example_pools")


class LoggingThreadPool(ThreadPool):
    """The threads pool, logging each job as it is handed to a thread.

    ``runworker --pool=example_project.pools:LoggingThreadPool``. It keeps every capability of
    the threads pool (autoscale, soft time limits); ``alias`` is emptied so that the banner and
    the admin name it by its dotted path rather than as ``threads``.
    """

    alias = ""

    def apply_async(self, job: Job) -> None:
        logger.info(
            "example pool: task=%s id=%s handed to a thread", job.envelope["task"], job.task_id
        )
        super().apply_async(job)


class ExecutorPool(BasePool):
    """A fixed-size thread pool built on the standard library's executor."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._executor: ThreadPoolExecutor | None = None
        self._pending: dict[int, tuple[Job, Future[None]]] = {}  # token -> (job, future)
        self._busy = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=self.initial_size, thread_name_prefix="example-pool"
        )

    def stop(self, *, graceful: bool, timeout_s: float | None = None) -> list[Job]:
        if self._executor is None:
            return []
        with self._lock:
            pending = list(self._pending.values())
        not_started = [job for job, future in pending if future.cancel()]
        with self._lock:
            for job in not_started:
                self._pending.pop(job.token, None)
        if graceful:
            for _, future in pending:
                if not future.cancelled():
                    try:
                        future.result(timeout_s)
                    except Exception:
                        break  # timed out: leave the rest running, as the contract allows
        self._executor.shutdown(wait=False)
        return not_started

    def apply_async(self, job: Job) -> None:
        assert self._executor is not None, "start() the pool first"
        with self._lock:
            self._pending[job.token] = (job, self._executor.submit(self._run, job))

    def withdraw(self, tokens: Collection[int]) -> list[Job]:
        with self._lock:
            pending = [self._pending[token] for token in tokens if token in self._pending]
        # A future that already started cannot be cancelled: that job runs on.
        withdrawn = [job for job, future in pending if future.cancel()]
        with self._lock:
            for job in withdrawn:
                self._pending.pop(job.token, None)
        return withdrawn

    def queued(self) -> list[Job]:
        with self._lock:
            return [job for job, future in self._pending.values() if not future.running()]

    def _run(self, job: Job) -> None:
        with self._lock:
            self._busy += 1
        try:
            outcome = self.run_job(job)
        finally:
            connections.close_all()
            with self._lock:
                self._busy -= 1
                self._pending.pop(job.token, None)
        self.on_outcome(outcome)

    @property
    def size(self) -> int:
        return self.initial_size

    @property
    def busy(self) -> int:
        return self._busy
