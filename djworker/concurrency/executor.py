"""What a pool is handed to run jobs with: the ``Executor``.

A pool decides where and under which limits a job runs (a thread, a child process, a
greenlet); the executor decides what running it means: resolve the task, record its result,
retry it, and what to record when the job cannot finish. The worker hands each pool the
executor of ``djworker.execution`` (``TaskExecutor``); tests hand in their own. So nothing in
``djworker.concurrency`` imports the execution layer.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

from djworker.job import Job, Limits, Outcome

#: wraps the call of the task function to enforce a run's limits
LimitGuard = Callable[[Limits], AbstractContextManager[object]]


class Executor(Protocol):
    """Runs one job and records jobs a pool could not finish; safe to call from any slot."""

    def run(self, job: Job, guard: LimitGuard) -> Outcome:
        """Run the job with the pool's limit ``guard`` around the task function.

        Every error is turned into an ``Outcome`` (a database that is down hands the job back
        to the broker), so a slot never dies of a job. Called in whichever slot runs the job,
        also inside a prefork child.
        """
        ...

    def record_lost(
        self, job: Job, *, reason: str, exit_status: str = "", exception_class: str = ""
    ) -> Outcome:
        """Record a job whose slot died or was stopped, and say whether to redeliver it.

        Called in the worker's process after the slot was stopped; never raises.
        """
        ...
