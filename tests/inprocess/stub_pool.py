"""A pool for in-process tests: it holds each job until the test says what became of it.

It runs jobs with the executor the worker hands it (the real ``TaskExecutor``, through
``BasePool.run_job``) and records lost jobs with that executor's ``record_lost``, so rows are
written as a real pool writes them; only the moment is the test's.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from djworker.concurrency.base import BasePool
from djworker.job import Job, Limits


class HeldPool(BasePool):
    alias = ""
    supports_autoscale = True

    def __init__(self, *, size: int, **kwargs: Any) -> None:
        super().__init__(size=size, **kwargs)
        self._size = size
        self.held: list[Job] = []
        #: jobs the test started (``begin_next``): a stop lets them finish, as a real pool does
        self.running: list[Job] = []

    def start(self) -> None:
        return None

    def stop(self, *, graceful: bool, timeout_s: float | None = None) -> list[Job]:
        unstarted, self.held = self.held, []
        return unstarted

    def apply_async(self, job: Job) -> None:
        self.held.append(job)

    @property
    def size(self) -> int:
        return self._size

    @property
    def busy(self) -> int:
        return min(len(self.held) + len(self.running), self._size)

    def grow(self, n: int = 1) -> None:
        self._size += n

    def shrink(self, n: int = 1) -> None:
        self._size = max(1, self._size - n)

    def withdraw(self, tokens: Any) -> list[Job]:
        taken = [job for job in self.held if job.token in tokens]
        self.held = [job for job in self.held if job.token not in tokens]
        return taken

    def guard(self, limits: Limits) -> AbstractContextManager[object]:
        return nullcontext()

    # -- what the test decides -----------------------------------------------------------------

    def run_next(self) -> Job:
        """Run the oldest held job to its end and report its outcome."""
        job = self.held.pop(0)
        self.on_outcome(self.run_job(job))
        return job

    def begin_next(self) -> Job:
        """Start the oldest held job: it is running now, and a stop does not hand it back."""
        job = self.held.pop(0)
        self.running.append(job)
        return job

    def lose_next(self, reason: str = "its slot died") -> Job:
        """Report the oldest held job lost, as a pool whose slot died does."""
        job = self.held.pop(0)
        self.on_outcome(self.executor.record_lost(job, reason=reason))
        return job


class HeldProcessPool(HeldPool):
    """A held pool that says it runs processes: restarting it starts the worker process again."""

    uses_processes = True
