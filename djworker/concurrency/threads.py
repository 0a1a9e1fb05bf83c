"""The threads pool: N threads of the worker process, for I/O-bound tasks.

Each slot is a thread taking jobs from one shared queue. Growing starts threads; shrinking puts
a stop marker on the queue, which only an idle thread can take, so a busy slot is never stopped.
Each thread closes its own database connections when it exits.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager
from typing import Any

from django.db import connections

from djworker.concurrency.base import BasePool
from djworker.concurrency.timelimits import SoftLimitWatchdog
from djworker.job import Job, Limits, Outcome, OutcomeKind
from djworker.log_safety import get_logger
from djworker.worker_connections import close_task_connections

logger = get_logger(__name__)

_STOP = object()


class ThreadPool(BasePool):
    alias = "threads"
    signal_safe = True
    supports_autoscale = True
    supports_soft_time_limit = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # A Queue (not a SimpleQueue) so that waiting jobs can be seen and taken back under
        # its mutex, atomically with respect to the slots' get().
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._busy = 0
        self._running: dict[str, int] = {}  # task id -> thread ident
        self._names = itertools.count(1)
        self._watchdog = SoftLimitWatchdog()
        self._stopping = False

    def start(self) -> None:
        self._start_threads(self.initial_size)

    def _start_threads(self, n: int) -> None:
        for _ in range(n):
            thread = threading.Thread(
                target=self._slot, name=f"djworker-thread-{next(self._names)}", daemon=True
            )
            with self._lock:
                self._threads.add(thread)
            thread.start()

    def _slot(self) -> None:
        try:
            while True:
                job = self._jobs.get()
                if job is _STOP:
                    return
                with self._lock:
                    self._busy += 1
                    self._running[job.task_id] = threading.get_ident()
                try:
                    outcome = self.run_job(job)
                except Exception as exc:
                    # run_job reports every error as an outcome; should one escape anyway,
                    # the job must still report (or it holds its place in the prefetch window
                    # for good) and the slot must live on (or its queue waits for nobody).
                    logger.exception("id=%s the slot could not run the job", job.task_id)
                    outcome = Outcome(
                        job.token, job.task_id, OutcomeKind.LOST, requeue=True, detail=str(exc)
                    )
                finally:
                    with self._lock:
                        self._busy -= 1
                        self._running.pop(job.task_id, None)
                self.on_outcome(outcome)
        finally:
            close_task_connections()
            connections.close_all()
            with self._lock:
                self._threads.discard(threading.current_thread())

    def stop(self, *, graceful: bool, timeout_s: float | None = None) -> list[Job]:
        self._stopping = True
        not_started = self._take_queued()
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._jobs.put(_STOP)
        if graceful:
            for thread in threads:
                thread.join(timeout_s)
        self._watchdog.stop()
        return not_started

    def _take_queued(self) -> list[Job]:
        taken: list[Job] = []
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                return taken
            if item is not _STOP:
                taken.append(item)

    def apply_async(self, job: Job) -> None:
        self._jobs.put(job)

    def withdraw(self, tokens: Collection[int]) -> list[Job]:
        wanted = set(tokens)
        with self._jobs.mutex:
            waiting = self._jobs.queue
            withdrawn = [item for item in waiting if item is not _STOP and item.token in wanted]
            if withdrawn:
                kept = [item for item in waiting if item is _STOP or item.token not in wanted]
                waiting.clear()
                waiting.extend(kept)
                # Queue.join() is never used, but keep its bookkeeping true all the same.
                self._jobs.unfinished_tasks -= len(withdrawn)
        return withdrawn

    def queued(self) -> list[Job]:
        with self._jobs.mutex:
            return [item for item in self._jobs.queue if item is not _STOP]

    @property
    def busy(self) -> int:
        return self._busy

    def info(self) -> dict[str, Any]:
        return {**super().info(), "threads_alive": len(self._threads)}

    def on_grow(self, n: int) -> None:
        self._start_threads(n)

    def on_shrink(self, n: int) -> None:
        # Only an idle thread takes a stop marker, so a busy slot finishes its job first.
        for _ in range(n):
            self._jobs.put(_STOP)

    def guard(self, limits: Limits) -> AbstractContextManager[object]:
        if not limits.soft_s:
            return contextlib.nullcontext()
        return self._soft_limit(limits.soft_s)

    @contextlib.contextmanager
    def _soft_limit(self, soft_s: float) -> Iterator[None]:
        run = self._watchdog.arm(soft_s)
        try:
            yield
        finally:
            self._watchdog.disarm(run)
