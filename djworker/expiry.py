"""Result expiry: deleting finished results, control commands and autoscale decisions older
than ``DJWORKER["RESULT_EXPIRES"]`` (default 7 days; ``None`` keeps them forever).

Deletes go in batches of ``BATCH_ROWS`` rows, each its own short transaction (ids first, then
``DELETE ... WHERE id IN``), so no lock is held long and workers writing results meanwhile are
never blocked behind a big delete. Only finished rows go: READY and RUNNING rows are kept
whatever their age, and so is a revoked row whose message is still due to arrive (its row is
what makes the workers refuse it).

Workers run it themselves (``ExpirySweeper``, a control-tick hook), one at a time across the
cluster thanks to a ``MaintenanceLease``; ``manage.py djworker cleanup`` runs it on demand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from djworker.log_safety import get_logger
from djworker.models import ControlCommand, MaintenanceLease, TaskResult, Worker
from djworker.models.maintenance import take_lease
from djworker.models.results import FINISHED_STATUSES
from djworker.models.workers import CommandStatus

logger = get_logger(__name__)

BATCH_ROWS = 500
#: batches one worker deletes per turn, so its control tick (heartbeats) is never held long
WORKER_TURN_BATCHES = 10
LEASE_NAME = "result-expiry"
#: how often a worker looks at the lease (cheap: one UPDATE that usually matches nothing)
CHECK_EVERY_S = 30.0


@dataclass
class Swept:
    """What one sweep deleted (or, for a dry run, would delete)."""

    results: int = 0
    commands: int = 0
    scale_decisions: int = 0
    #: stopped at its batch budget with more left to delete
    more: bool = False

    def __str__(self) -> str:
        return (
            f"results={self.results} commands={self.commands} "
            f"scale_decisions={self.scale_decisions}" + (" (more left)" if self.more else "")
        )


def expired_results(cutoff: datetime, now: datetime) -> QuerySet[TaskResult]:
    still_due = Q(revoked_at__isnull=False, run_after__gt=now)
    return TaskResult.objects.filter(status__in=FINISHED_STATUSES, finished_at__lt=cutoff).exclude(
        still_due
    )


def expired_commands(cutoff: datetime) -> QuerySet[ControlCommand]:
    return ControlCommand.objects.filter(
        status__in=(CommandStatus.DONE, CommandStatus.FAILED), finished_at__lt=cutoff
    )


def _delete_in_batches(rows: QuerySet[Any], budget: int | None) -> tuple[int, bool]:
    """Delete ``rows`` batch by batch; (how many, whether the budget stopped it first)."""
    deleted = batches = 0
    while budget is None or batches < budget:
        ids = list(rows.values_list("pk", flat=True)[:BATCH_ROWS])
        if not ids:
            return deleted, False
        with transaction.atomic(using=rows.db):
            # The filter again: a row changed since it was read is left alone.
            count, _ = rows.filter(pk__in=ids).delete()
        deleted += count
        batches += 1
        if len(ids) < BATCH_ROWS:
            return deleted, False
    return deleted, bool(rows.exists())


def _trim_scale_decisions(cutoff: datetime, *, dry_run: bool) -> int:
    """Drop autoscale decisions older than ``cutoff`` from the rows of stopped workers.

    A live worker rewrites its latest decisions (at most a few) with each heartbeat.
    """
    trimmed = 0
    for worker in Worker.objects.exclude(scale_events=[]).only("pk", "state", "scale_events"):
        if worker.state == "online":
            continue
        kept = [e for e in worker.scale_events if str(e.get("at", "")) >= cutoff.isoformat()]
        if len(kept) != len(worker.scale_events):
            trimmed += len(worker.scale_events) - len(kept)
            if not dry_run:
                Worker.objects.filter(pk=worker.pk).update(scale_events=kept)
    return trimmed


def sweep(
    expires_s: float,
    *,
    now: datetime | None = None,
    budget: int | None = None,
    dry_run: bool = False,
) -> Swept:
    """Delete what is older than ``expires_s``; at most ``budget`` batches per kind."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=expires_s)
    results, commands = expired_results(cutoff, now), expired_commands(cutoff)
    if dry_run:
        return Swept(results.count(), commands.count(), _trim_scale_decisions(cutoff, dry_run=True))
    swept = Swept()
    swept.results, more_results = _delete_in_batches(results, budget)
    swept.commands, more_commands = _delete_in_batches(commands, budget)
    swept.scale_decisions = _trim_scale_decisions(cutoff, dry_run=False)
    swept.more = more_results or more_commands
    return swept


class ExpirySweeper:
    """The control-tick hook: a turn of ``sweep`` whenever this worker takes the lease.

    The lease is held for the cleanup interval, so across the cluster one worker sweeps per
    interval. A turn that stops at its budget shortens the wait, so a backlog (the first run
    on an old table) is worked off in turns of a few seconds instead of one long hold.
    """

    def __init__(
        self,
        *,
        hostname: str,
        expires_s: float | None,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hostname = hostname
        self.expires_s = expires_s
        self.interval_s = interval_s
        self.clock = clock
        self._next = clock() + min(CHECK_EVERY_S, interval_s)

    def __call__(self) -> None:
        if self.expires_s is None or self.clock() < self._next:
            return
        self._next = self.clock() + min(CHECK_EVERY_S, self.interval_s)
        if not take_lease(LEASE_NAME, self.hostname, hold_s=self.interval_s):
            return
        started = time.monotonic()
        swept = sweep(self.expires_s, budget=WORKER_TURN_BATCHES)
        outcome = f"{swept} in {time.monotonic() - started:.2f}s by {self.hostname}"
        update: dict[str, Any] = {"last_finished_at": timezone.now(), "last_outcome": outcome}
        if swept.more:
            # Come back soon (this worker or another) for the rest.
            self._next = self.clock()
            update["held_until"] = timezone.now()
        MaintenanceLease.objects.filter(name=LEASE_NAME, holder=self.hostname).update(**update)
        if swept.results or swept.commands or swept.scale_decisions:
            logger.info("result expiry: deleted %s", outcome)
