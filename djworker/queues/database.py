"""Queue figures for the ``django://`` broker, read from the ``QueueMessage`` table."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from djworker.models.broker import QueueMessage
from djworker.queues.inspector import QueueInspector, QueueStats


class DatabaseInspector(QueueInspector):
    """Every figure is known: the table holds ready, delayed and leased messages alike.

    A message whose lease ran out counts as ready: any worker may take it again.
    """

    family = "django"

    @property
    def _messages(self) -> QuerySet[QueueMessage]:
        alias = self.broker.transport_options.get("database", "default")
        return QueueMessage.objects.using(alias)

    def stats(self, names: Iterable[str]) -> list[QueueStats]:
        wanted = list(names)
        now = timezone.now()
        due = Q(visible_at__lte=now)
        free = Q(lease="")
        rows = {
            row["queue"]: row
            for row in self._messages.filter(queue__in=wanted)
            .values("queue")
            .annotate(
                ready=Count("id", filter=due),
                delayed=Count("id", filter=free & ~due),
                reserved=Count("id", filter=~free & ~due),
                oldest=Min("created_at", filter=due),
            )
        }
        stats = []
        for name in wanted:
            row = rows.get(name)
            if row is None:
                stats.append(QueueStats(name, 0, 0, 0, None))
                continue
            oldest: datetime | None = row["oldest"]
            stats.append(
                QueueStats(
                    name,
                    int(row["ready"]),
                    int(row["delayed"]),
                    int(row["reserved"]),
                    None if oldest is None else max(0.0, (now - oldest).total_seconds()),
                )
            )
        return stats

    def purge(self, name: str) -> int:
        # The transport's own purge: unleased messages and those whose lease ran out.
        with self.broker.connection() as connection:
            return int(connection.default_channel.queue_purge(name) or 0)

    def known_queues(self) -> list[str]:
        return sorted(self._messages.values_list("queue", flat=True).distinct())
