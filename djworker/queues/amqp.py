"""Queue figures for AMQP (RabbitMQ), from a passive ``queue.declare``.

AMQP reports a queue's ready messages and its consumers, nothing else: messages delivered and
not yet acknowledged (including countdown/ETA messages a worker holds until due) and the age of
the oldest message are unknown to the protocol, so they are reported as unknown.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from djworker.queues.inspector import UNKNOWN, QueueInspector, QueueStats


class AmqpInspector(QueueInspector):
    family = "amqp"

    def _declared(self, connection: object, name: str) -> tuple[int, int] | None:
        """(ready, consumers) of ``name``; None if the broker has no such queue."""
        channel = connection.channel()  # type: ignore[attr-defined]
        try:
            ok = channel.queue_declare(queue=name, passive=True)
        except connection.channel_errors:  # type: ignore[attr-defined]
            return None  # 404 NOT_FOUND closes the channel; the next queue gets a new one
        else:
            return int(ok.message_count), int(ok.consumer_count)
        finally:
            # Already closed by the broker after a 404.
            with contextlib.suppress(Exception):
                channel.close()

    def stats(self, names: Iterable[str]) -> list[QueueStats]:
        stats = []
        with self.broker.connection() as connection:
            connection.ensure_connection(max_retries=1)
            for name in names:
                declared = self._declared(connection, name)
                ready, consumers = declared if declared is not None else (0, 0)
                stats.append(
                    QueueStats(
                        name,
                        ready,
                        UNKNOWN,
                        UNKNOWN,
                        UNKNOWN if ready else None,
                        consumers,
                    )
                )
        return stats

    def purge(self, name: str) -> int:
        with self.broker.connection() as connection:
            connection.ensure_connection(max_retries=1)
            if self._declared(connection, name) is None:
                return 0
            channel = connection.channel()
            try:
                return int(channel.queue_purge(name) or 0)
            finally:
                channel.close()
