"""Results that wait for a message that no longer exists.

A call's row is written READY when it is published. If its message is lost afterwards (a Redis
without persistence restarted, a key evicted, a queue purged), the row stays READY for ever and
the user waiting on it is never told. No broker can be asked cheaply whether it holds the
message of one task id, but each can count what it holds for a queue: when a queue has more
READY rows older than ``STUCK_AFTER_S`` than the broker holds messages for it (ready, delayed
and reserved), at least the difference can never run. ``find_stuck`` compares the two with one
grouped query and one read of the broker's figures; ``StuckResultsWatch`` runs it from the
worker's control tick every ``CHECK_EVERY_S`` for the queues the worker consumes and logs what
it finds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from time import monotonic

from django.db.models import Count
from django.utils import timezone

from djworker.broker import Broker
from djworker.models import TaskResult, TaskStatus
from djworker.queues import Unknown, inspector_for

logger = logging.getLogger(__name__)

#: a READY row older than this with no message behind it is reported
STUCK_AFTER_S = 3600.0
#: how often a worker looks (one grouped query and one read of the broker's queue figures)
CHECK_EVERY_S = 300.0
#: ids named per queue, oldest first
SAMPLE_IDS = 5


@dataclass(frozen=True)
class StuckQueue:
    """A queue whose old READY rows outnumber the messages its broker holds."""

    queue: str
    old_ready: int  # READY rows enqueued more than STUCK_AFTER_S ago
    held: int  # messages the broker holds for the queue: ready + delayed + reserved
    oldest_ids: list[str]

    @property
    def without_message(self) -> int:
        return self.old_ready - self.held

    def describe(self) -> str:
        return (
            f"queue={self.queue}: {self.without_message} READY result(s) older than "
            f"{STUCK_AFTER_S:.0f}s have no message behind them (old READY rows={self.old_ready}, "
            f"messages the broker holds={self.held}); they will never run unless published "
            f"again. oldest ids={','.join(self.oldest_ids)}"
        )


def find_stuck(
    broker: Broker, queues: Iterable[str], *, now: datetime | None = None
) -> list[StuckQueue]:
    """The queues with more old READY rows than messages; a queue the broker cannot count is
    skipped (its figures are unknown, not zero)."""
    names = list(queues)
    cutoff = (now or timezone.now()) - timedelta(seconds=STUCK_AFTER_S)
    old = TaskResult.objects.filter(
        status=TaskStatus.READY, queue__in=names, enqueued_at__lt=cutoff
    )
    by_queue = old.order_by().values_list("queue").annotate(n=Count("id"))
    counts = dict(by_queue.values_list("queue", "n"))
    if not counts:
        return []
    stuck = []
    for stats in inspector_for(broker).stats(list(counts)):
        held = 0
        for figure in (stats.ready, stats.delayed, stats.reserved):
            if isinstance(figure, Unknown):
                break
            held += figure
        else:
            if counts[stats.name] > held:
                oldest = old.filter(queue=stats.name).order_by("enqueued_at")[:SAMPLE_IDS]
                ids = [str(pk) for pk in oldest.values_list("id", flat=True)]
                stuck.append(StuckQueue(stats.name, counts[stats.name], held, ids))
    return stuck


class StuckResultsWatch:
    """The control-tick hook: ``find_stuck`` for the worker's queues every ``CHECK_EVERY_S``."""

    def __init__(
        self,
        broker: Broker,
        queues: Callable[[], list[str]],
        *,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self.broker = broker
        self.queues = queues
        self.clock = clock
        self._next = clock() + CHECK_EVERY_S  # not at start: the broker may still be filling

    def __call__(self) -> None:
        now = self.clock()
        if now < self._next:
            return
        self._next = now + CHECK_EVERY_S
        for queue in find_stuck(self.broker, self.queues()):
            logger.warning("%s", queue.describe())
