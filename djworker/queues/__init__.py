"""What each broker can say about its queues, through one interface, and purging them.

The admin's queue page and the ``djworker status`` / ``djworker purge`` commands read queue
depths here, never from result rows (a READY row is not a message: a purged or lost message
leaves its row, and a message published elsewhere has none).

One ``QueueInspector`` per broker family: ``django://`` (``database.py``), Redis
(``redis.py``) and AMQP (``amqp.py``). A figure a broker cannot give is ``UNKNOWN``, never 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from djworker.queues.inspector import UNKNOWN, QueueInspector, QueueStats, Unknown

if TYPE_CHECKING:
    from djworker.broker import Broker

__all__ = [
    "UNKNOWN",
    "QueueInspector",
    "QueueStats",
    "Unknown",
    "inspector_for",
]


def inspector_for(broker: Broker) -> QueueInspector:
    """The inspector for ``broker``'s transport."""
    scheme = broker.scheme
    if scheme == "django":
        from djworker.queues.database import DatabaseInspector

        return DatabaseInspector(broker)
    if scheme in ("redis", "rediss"):
        from djworker.queues.redis import RedisInspector

        return RedisInspector(broker)
    if scheme in ("amqp", "amqps", "pyamqp"):
        from djworker.queues.amqp import AmqpInspector

        return AmqpInspector(broker)
    raise ValueError(
        f"no queue inspector for broker scheme {scheme!r}; djworker inspects django, redis, "
        "rediss, amqp, amqps and pyamqp"
    )
