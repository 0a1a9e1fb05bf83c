"""Results that wait for a message that no longer exists.

A call's row is written READY when it is published. If its message is lost afterwards (a Redis
without persistence restarted, a key evicted, a queue purged), the row stays READY for ever and
the user waiting on it is never told. No broker can be asked cheaply whether it holds the
message of one task id, but each can count what it holds for a queue: when a queue has more
READY rows older than ``STUCK_AFTER_S`` than the broker holds messages for it (ready, delayed
and reserved), at least the difference can never run. ``find_stuck`` compares the two with one
grouped query and one read of the broker's figures; ``StuckResultsWatch`` runs it from the
worker's control tick every ``CHECK_EVERY_S`` for the queues the worker consumes and logs what
it finds; ``djworker status`` shows the same from the figures it reads (``compare``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from time import monotonic

from django.db.models import Count, QuerySet
from django.utils import timezone

from djworker.broker import Broker
from djworker.log_safety import get_logger
from djworker.models import TaskResult, TaskStatus
from djworker.queues import QueueStats, Unknown, inspector_for

logger = get_logger(__name__)

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
    """The queues with more old READY rows than messages, reading the broker's figures."""
    counts = _old_ready(queues, now)
    if not counts:
        return []
    return compare(inspector_for(broker).stats(list(counts)), now=now, counts=counts)


def compare(
    stats: Iterable[QueueStats],
    *,
    now: datetime | None = None,
    counts: dict[str, int] | None = None,
) -> list[StuckQueue]:
    """The queues of ``stats`` with more old READY rows than messages; a queue whose figures
    the broker cannot give is skipped (unknown is not zero)."""
    stats = list(stats)
    if counts is None:
        counts = _old_ready([q.name for q in stats], now)
    stuck = []
    for queue in stats:
        old_ready = counts.get(queue.name, 0)
        held = 0
        for figure in (queue.ready, queue.delayed, queue.reserved):
            if isinstance(figure, Unknown):
                break
            held += figure
        else:
            if old_ready > held:
                oldest = _old(now).filter(queue=queue.name).order_by("enqueued_at")
                ids = [str(pk) for pk in oldest.values_list("id", flat=True)[:SAMPLE_IDS]]
                stuck.append(StuckQueue(queue.name, old_ready, held, ids))
    return stuck


def _old(now: datetime | None) -> QuerySet[TaskResult]:
    cutoff = (now or timezone.now()) - timedelta(seconds=STUCK_AFTER_S)
    return TaskResult.objects.filter(status=TaskStatus.READY, enqueued_at__lt=cutoff)


def _old_ready(queues: Iterable[str], now: datetime | None) -> dict[str, int]:
    """READY rows older than ``STUCK_AFTER_S`` per queue, in one grouped query."""
    by_queue = _old(now).filter(queue__in=list(queues)).order_by().values_list("queue")
    return dict(by_queue.annotate(n=Count("id")).values_list("queue", "n"))


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
