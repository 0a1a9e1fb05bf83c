"""``QueueMessage``: the message table behind the ``django://`` kombu transport."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class QueueMessage(models.Model):
    """A message waiting in a queue of the database broker.

    ``visible_at`` does double duty: a countdown/ETA message is invisible until it is due, and a
    delivered but unacknowledged message is invisible until its lease (the visibility timeout)
    runs out, after which another worker may take it.
    """

    id = models.BigAutoField(primary_key=True)
    queue = models.CharField(max_length=200)
    priority = models.SmallIntegerField(default=0)
    payload = models.TextField()
    visible_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    lease = models.CharField(max_length=64, blank=True, default="")
    deliveries = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "queued message"
        indexes = [
            models.Index(
                fields=["queue", "-priority", "visible_at", "id"], name="djworker_qmsg_fetch_idx"
            )
        ]

    def __str__(self) -> str:
        return f"{self.queue}#{self.id}"


class BrokerQueue(QueueMessage):
    """The admin's page of broker queues (depths from the broker, purge): no table of its own.

    A proxy so that the page has a place in the admin and permissions of its own; the figures
    come from ``djworker.queues`` whatever the broker.
    """

    class Meta:
        proxy = True
        verbose_name = "queue"
        permissions = [("purge_queue", "Can purge broker queues")]
