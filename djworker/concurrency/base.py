"""The pool interface every execution pool implements.

A pool runs ``Job`` objects through ``run_job`` (the ``Executor`` it was handed, with the pool's
limit ``guard``) and reports each ``Outcome`` through ``on_outcome``, which may be called from
any thread. A job a slot could not finish is recorded with ``executor.record_lost``.
The pool never touches the broker: the consumer owns it and acknowledges on the outcome.

The whole interface is declared here. Optional operations raise ``NotSupportedByPool`` unless the
pool's capability flag says it supports them; nothing is attached to pool instances at run time.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from typing import Any

from djworker import bounds
from djworker.concurrency.capabilities import PoolCapabilities
from djworker.concurrency.executor import Executor
from djworker.concurrency.settings_check import check_settings
from djworker.exceptions import ConfigurationError, NotSupportedByPool
from djworker.job import Job, Limits, Outcome

OutcomeCallback = Callable[[Outcome], None]
#: how the constructor's arguments are given on the command line, for its messages
OPTION_FLAGS = {
    "concurrency": "--concurrency",
    "max_tasks_per_child": "--max-tasks-per-child",
    "max_memory_per_child_kib": "--max-memory-per-child",
}


class BasePool(PoolCapabilities, ABC):
    """An execution pool: a number of slots, each running one job at a time.

    Its capability flags (class attributes) are declared in ``PoolCapabilities``.
    """

    def __init__(
        self,
        *,
        size: int,
        on_outcome: OutcomeCallback,
        executor: Executor,
        max_tasks_per_child: int | None = None,
        max_memory_per_child_kib: int | None = None,
        max_size: int = bounds.DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        if size < 1:
            raise ConfigurationError(f"pool size must be a positive integer; got {size!r}")
        bounds.check_size("pool size", size, max_size)
        check_settings(
            type(self),
            {
                "concurrency": size,
                "max_tasks_per_child": max_tasks_per_child,
                "max_memory_per_child_kib": max_memory_per_child_kib,
            },
            spell=lambda field: OPTION_FLAGS.get(field, field),
        )
        self.initial_size = size
        #: the number of slots asked of the pool; ``grow`` and ``shrink`` keep it, the pool's
        #: hooks (``on_grow``, ``on_shrink``) bring its slots to it
        self.target_size = size
        self.max_size = max_size
        self.on_outcome = on_outcome
        self.executor = executor
        self.max_tasks_per_child = max_tasks_per_child
        self.max_memory_per_child_kib = max_memory_per_child_kib

    # -- lifecycle -------------------------------------------------------------------------

    @abstractmethod
    def start(self) -> None:
        """Create the slots. Called once, before the first ``apply_async``."""

    @abstractmethod
    def stop(self, *, graceful: bool, timeout_s: float | None = None) -> list[Job]:
        """Stop the pool.

        Graceful: take no more jobs, let running ones finish (up to ``timeout_s``) and report
        their outcomes. Not graceful: stop now without reporting running jobs. Either way,
        return the jobs that were accepted but never started, so the consumer can hand them
        back to the broker.
        """

    # -- work ------------------------------------------------------------------------------

    @abstractmethod
    def apply_async(self, job: Job) -> None:
        """Accept a job; its outcome is reported later through ``on_outcome``."""

    @property
    def size(self) -> int:
        """Number of slots now: what ``grow`` and ``shrink`` have made of the starting size."""
        return self.target_size

    @property
    @abstractmethod
    def busy(self) -> int:
        """Number of slots running a job now."""

    def withdraw(self, tokens: Collection[int]) -> list[Job]:
        """Take back the accepted jobs with these tokens that no slot has started; return them.

        Used when the broker connection a job came from is lost: the broker delivers its
        message again, so it must not start here too. A job a slot has already taken runs on.
        Pools that keep no jobs waiting (solo) have nothing to take back.
        """
        return []

    def queued(self) -> list[Job]:
        """The accepted jobs waiting for a slot, oldest first (a snapshot, from any thread)."""
        return []

    def info(self) -> dict[str, Any]:
        """A JSON-able picture of the pool for banners, heartbeats and the admin."""
        return {"pool": self.describe(), "size": self.size, "busy": self.busy}

    def run_job(self, job: Job) -> Outcome:
        """Run one job with the executor, in whichever slot (thread, child, greenlet) runs it.

        The executor turns every error into an outcome (see ``Executor.run``).
        """
        return self.executor.run(job, self.guard)

    def guard(self, limits: Limits) -> AbstractContextManager[object]:
        """Enforce ``limits`` around the task function; pools with time limits override this."""
        return contextlib.nullcontext()

    # -- optional operations (see the capability flags) -------------------------------------

    def grow(self, n: int = 1) -> None:
        """Add ``n`` slots, up to ``max_size``: counted here, started by ``on_grow(n)``."""
        if not self.supports_autoscale:
            raise NotSupportedByPool(f"the {self.describe()} pool cannot grow")
        self.check_growth(n)
        self.target_size += n
        self.on_grow(n)

    def check_growth(self, n: int) -> None:
        """Refuse to grow past ``max_size``: the size must stay one the worker can report."""
        if n < 1:
            raise ConfigurationError(f"grow needs N of 1 or more; got {n!r}")
        if self.size + n > self.max_size:
            raise ConfigurationError(
                f"cannot grow the pool of {self.size} by {n}: the maximum pool size is "
                f"{self.max_size} ({bounds.SETTING})"
            )

    def shrink(self, n: int = 1) -> None:
        """Remove up to ``n`` slots, keeping one: counted here, stopped by ``on_shrink(n)``.

        A busy slot is never stopped: it leaves once its job is done.
        """
        if not self.supports_autoscale:
            raise NotSupportedByPool(f"the {self.describe()} pool cannot shrink")
        n = min(n, self.target_size - 1)
        if n < 1:
            return
        self.target_size -= n
        self.on_shrink(n)

    def on_grow(self, n: int) -> None:
        """Start ``n`` more slots (``target_size`` already counts them); resizable pools
        override this."""
        raise NotSupportedByPool(f"the {self.describe()} pool cannot grow")

    def on_shrink(self, n: int) -> None:
        """Retire ``n`` slots (``target_size`` no longer counts them), idle ones first."""
        raise NotSupportedByPool(f"the {self.describe()} pool cannot shrink")

    def terminate_job(self, task_id: str) -> bool:
        """Stop the running job with this task id; False if no slot runs it."""
        raise NotSupportedByPool(f"the {self.describe()} pool cannot terminate a running task")
