"""Lost workers: a worker that stopped sending heartbeats, and the tasks it was running.

A worker whose heartbeat is older than ``DJWORKER["WORKER_LOST_AFTER"]`` (default 60 s) is
marked ``lost`` by another worker (one at a time across the cluster, through a
``MaintenanceLease``). Its RUNNING rows are then settled so none stays "Running" forever:

* a task acknowledged before it ran (``acks_late=False``, or a task no longer registered)
  will not be delivered again: FAILED, ``WorkerLost``;
* a late-acknowledged task will be: READY again, ``exit_status`` "worker lost", until the
  broker delivers it again (the row turns RUNNING on the worker that takes it). If that has not
  happened once the visibility timeout and the threshold have passed, it is FAILED too.

A lost worker that comes back (its heartbeat resumes) is online again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import QuerySet
from django.utils import timezone

from djworker.log_safety import get_logger
from djworker.models import TaskResult, TaskStatus, Worker, WorkerState
from djworker.models.maintenance import take_lease
from djworker.task_definition import registry

logger = get_logger(__name__)

LEASE_NAME = "lost-workers"
EXIT_STATUS = "worker lost"
BATCH_ROWS = 500


@dataclass
class Reaped:
    workers: list[str]
    failed: int = 0
    waiting: int = 0
    not_redelivered: int = 0


def _redelivered(task_name: str) -> bool:
    task = registry.get(task_name)
    return bool(task is not None and task.acks_late)


def reap(
    *, lost_after_s: float, visibility_timeout_s: float, now: datetime | None = None
) -> Reaped:
    """Mark silent workers lost and settle the tasks they left; see the module docstring."""
    now = now or timezone.now()
    silent = Worker.objects.filter(
        state=WorkerState.ONLINE, last_heartbeat__lt=now - timedelta(seconds=lost_after_s)
    )
    names = list(silent.values_list("hostname", flat=True))
    if names:
        # The filter again: a worker that wrote a heartbeat meanwhile stays online.
        silent.filter(hostname__in=names).update(state=WorkerState.LOST)
    reaped = Reaped(workers=names)
    gone = Worker.objects.filter(state__in=(WorkerState.LOST, WorkerState.STOPPED)).values(
        "hostname"
    )
    _settle(
        TaskResult.objects.filter(status=TaskStatus.RUNNING, worker_hostname__in=gone), now, reaped
    )
    # Not delivered again in time: counted from the worker's last heartbeat, when it died.
    overdue = Worker.objects.filter(
        state__in=(WorkerState.LOST, WorkerState.STOPPED),
        last_heartbeat__lt=now - timedelta(seconds=visibility_timeout_s + lost_after_s),
    ).values("hostname")
    reaped.not_redelivered = TaskResult.objects.filter(
        status=TaskStatus.READY, exit_status=EXIT_STATUS, worker_hostname__in=overdue
    ).update(
        status=TaskStatus.FAILED,
        exception_message="its worker was lost and the broker did not deliver it again "
        "within the visibility timeout",
        finished_at=now,
    )
    return reaped


def _settle(left: QuerySet[TaskResult], now: datetime, reaped: Reaped) -> None:
    """Settle RUNNING rows a dead process left (see the module docstring)."""
    for row in left.only("id", "task_name", "worker_hostname")[:BATCH_ROWS]:
        # Each update checks the row is still that run: a redelivery may have started it
        # elsewhere since.
        same_run = TaskResult.objects.filter(
            id=row.id, status=TaskStatus.RUNNING, worker_hostname=row.worker_hostname
        )
        if _redelivered(row.task_name):
            reaped.waiting += same_run.update(
                status=TaskStatus.READY,
                exit_status=EXIT_STATUS,
                exception_class="WorkerLost",
                exception_message=(
                    f"worker {row.worker_hostname} was lost while running it; waiting for the "
                    "broker to deliver it again"
                ),
            )
        else:
            reaped.failed += same_run.update(
                status=TaskStatus.FAILED,
                exit_status=EXIT_STATUS,
                exception_class="WorkerLost",
                exception_message=(
                    f"worker {row.worker_hostname} was lost while running it; its message was "
                    "acknowledged before the run, so it will not run again"
                ),
                finished_at=now,
            )


def settle_previous_runs(hostname: str, *, started_before: datetime) -> Reaped:
    """At start: settle what an earlier process with this worker's name left RUNNING.

    A worker restarted under its name (after a kill) takes over its row, so it never looks
    lost; its predecessor's runs are settled here instead, before it runs anything itself.
    """
    reaped = Reaped(workers=[])
    left = TaskResult.objects.filter(
        status=TaskStatus.RUNNING, worker_hostname=hostname, started_at__lt=started_before
    )
    _settle(left, timezone.now(), reaped)
    return reaped


class LostWorkerWatch:
    """The control-tick hook: ``reap`` every few seconds, by one worker of the cluster."""

    def __init__(
        self,
        *,
        hostname: str,
        lost_after_s: float,
        visibility_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hostname = hostname
        self.lost_after_s = lost_after_s
        self.visibility_timeout_s = visibility_timeout_s
        self.every_s = max(1.0, lost_after_s / 4)
        self.clock = clock
        self._next = clock() + self.every_s

    def __call__(self) -> None:
        if self.clock() < self._next:
            return
        self._next = self.clock() + self.every_s
        if not take_lease(LEASE_NAME, self.hostname, hold_s=self.every_s):
            return
        reaped = reap(
            lost_after_s=self.lost_after_s, visibility_timeout_s=self.visibility_timeout_s
        )
        for name in reaped.workers:
            logger.warning(
                "worker=%s lost: no heartbeat for more than %.0fs", name, self.lost_after_s
            )
        if reaped.failed or reaped.waiting or reaped.not_redelivered:
            logger.warning(
                "tasks left by lost workers: failed=%d waiting_for_redelivery=%d "
                "not_redelivered=%d",
                reaped.failed,
                reaped.waiting,
                reaped.not_redelivered,
            )
