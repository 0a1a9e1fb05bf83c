"""The worker's row in the ``Worker`` table: registered at start, kept by the heartbeat.

The control thread calls ``beat()`` every tick; the row is written when something an operator
sees has changed, and at least every ``heartbeat_interval_s`` so a silent worker turns stale.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from typing import Any

from django.db import router
from django.utils import timezone

from djworker.busy import retry_when_busy
from djworker.log_safety import get_logger
from djworker.models import CommandStatus, ControlCommand, Worker, WorkerProfile, WorkerState

logger = get_logger(__name__)


def resident_memory_kib() -> int:
    """Resident memory of this process now (peak on systems without ``/proc``)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


class Heartbeat:
    """Writes one worker's ``Worker`` row; ``snapshot()`` says what the row should show."""

    def __init__(
        self,
        *,
        hostname: str,
        interval_s: float,
        snapshot: Callable[[], dict[str, Any]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hostname = hostname
        self.interval_s = interval_s
        self.snapshot = snapshot
        self.clock = clock
        self.row_id: int | None = None
        self._profile: WorkerProfile | None = None
        self._written: dict[str, Any] | None = None
        self._written_at = 0.0

    def register(self, profile: WorkerProfile | None) -> Worker:
        """Create or take over this hostname's row; commands left for a previous process fail."""
        row = retry_when_busy(
            lambda: self._register(profile),
            alias=router.db_for_write(Worker),
            what=f"worker={self.hostname} register",
        )
        self.row_id = row.pk
        self._written = self.snapshot()
        self._written_at = self.clock()
        return row

    def _register(self, profile: WorkerProfile | None) -> Worker:
        now = timezone.now()
        self._profile = profile
        row, _ = Worker.objects.update_or_create(
            hostname=self.hostname,
            defaults={
                **self.snapshot(),
                "profile": profile,
                "rss_kib": resident_memory_kib(),
                "started_at": now,
                "last_heartbeat": now,
                "heartbeat_interval_s": self.interval_s,
                "state": WorkerState.ONLINE,
                "scale_events": [],
            },
        )
        ControlCommand.objects.filter(
            worker=row, status__in=(CommandStatus.PENDING, CommandStatus.RUNNING)
        ).update(
            status=CommandStatus.FAILED,
            finished_at=now,
            message="the worker restarted before carrying this out",
        )
        return row

    def beat(self) -> None:
        row_id = self.row_id
        if row_id is None:
            return
        snapshot = self.snapshot()
        now = self.clock()
        if snapshot == self._written and now - self._written_at < self.interval_s:
            return
        rss_kib = resident_memory_kib()
        written = retry_when_busy(
            lambda: Worker.objects.filter(pk=row_id).update(
                **snapshot,
                rss_kib=rss_kib,
                last_heartbeat=timezone.now(),
                state=WorkerState.ONLINE,
            ),
            alias=router.db_for_write(Worker),
            what=f"worker={self.hostname} heartbeat",
        )
        if not written:
            # Someone deleted the row of this running worker: it comes back.
            logger.warning(
                "worker=%s row was deleted while running; writing it again", self.hostname
            )
            self.register(self._profile)
        self._written = snapshot
        self._written_at = now

    def stopped(self) -> None:
        """Say the worker stopped on purpose, so the admin does not show it as stale."""
        row_id = self.row_id
        if row_id is None:
            return
        snapshot = {**self.snapshot(), "busy": 0}
        try:
            retry_when_busy(
                lambda: Worker.objects.filter(pk=row_id).update(
                    **snapshot, last_heartbeat=timezone.now(), state=WorkerState.STOPPED
                ),
                alias=router.db_for_write(Worker),
                what=f"worker={self.hostname} stop",
            )
        except Exception:
            logger.warning("worker=%s could not record its stop", self.hostname, exc_info=True)
