"""What the gevent and eventlet pools share: slots as greenlets, limits as green timers.

The library-specific parts (spawning, killing, timers) sit behind ``GreenRuntime``; everything
else, including the database budget, is written once here.

A slot is a greenlet that takes jobs from the pool's queue until the queue is empty, then ends;
``apply_async`` spawns slots up to the pool size. A greenlet-per-task design would open one
database connection per running task; a slot closes its connections when it ends, and the
budget (Django's psycopg connection pool, see ``DbBudget``) caps how many are open at once.

Hard time limits and ``terminate_job`` kill the slot's greenlet: the kill raises
``GreenletExit`` at the task's next cooperative switch, the slot records the loss with
the executor's ``record_lost`` and ends, and a fresh slot takes over the queue. A task stuck in C
code that never yields cannot be stopped by any green pool; use prefork for such work.
"""

from __future__ import annotations

import collections
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

from django.db import connections

from djworker.concurrency.base import BasePool
from djworker.concurrency.db_budget import DbBudget
from djworker.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from djworker.job import Job, Limits, Outcome, OutcomeKind
from djworker.log_safety import get_logger

logger = get_logger(__name__)


class GreenRuntime(ABC):
    """The few operations a green pool needs from gevent or eventlet."""

    #: the exception a kill raises inside the greenlet
    exit_exception: type[BaseException]

    @abstractmethod
    def spawn(self, fn: Callable[..., None], *args: Any) -> Any:
        """Start ``fn(*args)`` on a new greenlet; return its handle."""

    @abstractmethod
    def kill(self, handle: Any) -> None:
        """Raise ``exit_exception`` inside the greenlet without waiting for it."""

    @abstractmethod
    def call_later(self, seconds: float, fn: Callable[[], None]) -> Any:
        """Run ``fn`` after ``seconds`` on the hub; return something ``cancel`` accepts."""

    @abstractmethod
    def cancel(self, timer: Any) -> None:
        """Cancel a ``call_later`` that has not run yet."""

    @abstractmethod
    def timeout(self, seconds: float, exc: BaseException) -> AbstractContextManager[object]:
        """Raise ``exc`` in the current greenlet if the block runs longer than ``seconds``."""

    @abstractmethod
    def current(self) -> Any:
        """The running greenlet's handle."""

    @abstractmethod
    def sleep(self, seconds: float) -> None:
        """Yield to the hub for ``seconds``."""

    @abstractmethod
    def is_alive(self, handle: Any) -> bool:
        """Whether the greenlet has not finished yet."""


@dataclass
class _Slot:
    handle: Any = None
    job: Job | None = None
    # set by whoever kills the slot, read by the slot as it unwinds
    kill_reason: str = ""
    kill_class: str = ""


class GreenPool(BasePool):
    """Base of the gevent and eventlet pools: N greenlets of one monkey-patched process."""

    is_green = True
    signal_safe = True
    supports_autoscale = True
    supports_soft_time_limit = True
    supports_hard_time_limit = True
    supports_terminate = True

    #: the runtime of the green library (set by subclasses)
    runtime_class: ClassVar[type[GreenRuntime]]
    #: how often a graceful stop checks whether running slots have finished
    STOP_POLL_S: ClassVar[float] = 0.02

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = self.runtime_class()
        self._queue: collections.deque[Job] = collections.deque()
        self._slots: dict[Any, _Slot] = {}  # greenlet handle -> slot
        self._stopping = False
        self._busy = 0
        self.db_budget = DbBudget.from_django(concurrency=self.initial_size)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.db_budget.install()
        self._stopping = False

    def stop(self, *, graceful: bool, timeout_s: float | None = None) -> list[Job]:
        self._stopping = True
        not_started = list(self._queue)
        self._queue.clear()
        if graceful:
            self._wait_for_slots(timeout_s)
        else:
            for slot in list(self._slots.values()):
                slot.kill_reason = "cold shutdown"
                self.runtime.kill(slot.handle)
        if not self._slots:
            self.db_budget.close()
        return not_started

    def _wait_for_slots(self, timeout_s: float | None) -> None:
        waited = 0.0
        while self._slots and (timeout_s is None or waited < timeout_s):
            self.runtime.sleep(self.STOP_POLL_S)
            waited += self.STOP_POLL_S

    # -- work --------------------------------------------------------------------------------

    def apply_async(self, job: Job) -> None:
        self._queue.append(job)
        self._fill()

    def withdraw(self, tokens: Collection[int]) -> list[Job]:
        # Runs on the hub's thread like the slots, so no slot can pop a job meanwhile.
        wanted = set(tokens)
        withdrawn = [job for job in self._queue if job.token in wanted]
        if withdrawn:
            kept = [job for job in self._queue if job.token not in wanted]
            self._queue.clear()
            self._queue.extend(kept)
        return withdrawn

    def queued(self) -> list[Job]:
        return list(self._queue)

    def _fill(self) -> None:
        """Spawn slots while more jobs wait than idle slots can take, up to the pool size."""
        while (
            not self._stopping
            and len(self._queue) > len(self._slots) - self.busy
            and len(self._slots) < self.target_size
        ):
            slot = _Slot()
            slot.handle = self.runtime.spawn(self._run_slot, slot)
            self._slots[slot.handle] = slot

    def _run_slot(self, slot: _Slot) -> None:
        try:
            while self._queue and not self._stopping and len(self._slots) <= self.target_size:
                job = slot.job = self._queue.popleft()
                self._busy += 1
                try:
                    outcome = self._run_one(slot, job)
                except Exception as exc:
                    # As in the threads pool: a job must report, or it holds its place in the
                    # prefetch window for good.
                    logger.exception("id=%s the slot could not run the job", job.task_id)
                    outcome = Outcome(
                        job.token, job.task_id, OutcomeKind.LOST, requeue=True, detail=str(exc)
                    )
                finally:
                    slot.job = None
                    self._busy -= 1
                self.on_outcome(outcome)
        except self.runtime.exit_exception:
            pass  # killed while idle (cold shutdown or shrink)
        finally:
            self._slots.pop(slot.handle, None)
            connections.close_all()
            self._fill()

    def _run_one(self, slot: _Slot, job: Job) -> Any:
        timer = None
        if job.limits.hard_s:
            timer = self.runtime.call_later(
                job.limits.hard_s,
                lambda: self._kill_slot(
                    slot,
                    job,
                    f"hard time limit of {job.limits.hard_s}s exceeded",
                    TimeLimitExceeded.__name__,
                ),
            )
        try:
            return self.run_job(job)
        except self.runtime.exit_exception:
            if not slot.kill_reason or slot.kill_reason == "cold shutdown":
                raise
            # This greenlet's connection may be mid-query: report on a fresh one.
            connections.close_all()
            outcome = self.executor.record_lost(
                job, reason=slot.kill_reason, exception_class=slot.kill_class
            )
            slot.kill_reason = slot.kill_class = ""
            return outcome
        finally:
            if timer is not None:
                self.runtime.cancel(timer)

    def _kill_slot(self, slot: _Slot, job: Job, reason: str, exception_class: str) -> None:
        if slot.job is not job or not self.runtime.is_alive(slot.handle):
            return
        logger.warning("id=%s killing its greenlet: %s", job.task_id, reason)
        slot.kill_reason, slot.kill_class = reason, exception_class
        self.runtime.kill(slot.handle)

    def terminate_job(self, task_id: str) -> bool:
        for slot in list(self._slots.values()):
            if slot.job is not None and slot.job.task_id == task_id:
                self._kill_slot(slot, slot.job, "terminated on request", "Terminated")
                return True
        return False

    def guard(self, limits: Limits) -> AbstractContextManager[object]:
        return self._guarded(limits.soft_s)

    @contextlib.contextmanager
    def _guarded(self, soft_s: float | None) -> Iterator[None]:
        # Hand the connection used for the STARTED row back to the budget: a task that never
        # touches the database must not hold one while it waits on the network.
        _release_connections()
        if not soft_s:
            yield
            return
        with self.runtime.timeout(
            soft_s, SoftTimeLimitExceeded(f"soft time limit of {soft_s}s exceeded")
        ):
            yield

    # -- size --------------------------------------------------------------------------------

    @property
    def busy(self) -> int:
        return self._busy

    def on_grow(self, n: int) -> None:
        self._fill()

    def on_shrink(self, n: int) -> None:
        pass  # slots check the size between jobs, so a busy slot finishes its task first

    def info(self) -> dict[str, Any]:
        return {
            **super().info(),
            "greenlets": len(self._slots),
            "queued": len(self._queue),
            "db_budget": self.db_budget.describe(),
        }


def _release_connections() -> None:
    """Hand this greenlet's pooled connections back to the pool (others are left open)."""
    for conn in connections.all(initialized_only=True):
        pooled = getattr(conn, "pool", None) is not None
        if pooled and conn.connection is not None and not conn.in_atomic_block:
            conn.close()
