"""Queue figures for Redis, read from kombu's data layout.

A queue is one list per priority step (ready messages); delivered, unacknowledged messages sit
in the ``unacked`` hash with their routing key. djworker's consumer takes countdown/ETA
messages early and holds them until due, so an unacknowledged message whose ``eta`` header is
still ahead counts as delayed, the others as reserved.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.utils import timezone

from djworker import message
from djworker.exceptions import InvalidMessage
from djworker.queues.inspector import UNKNOWN, QueueInspector, QueueStats, Unknown


def _published_at(item: bytes | str) -> datetime | None:
    """``enqueued_at`` of a kombu payload carrying a djworker envelope, if it can be read."""
    try:
        payload = json.loads(item)
        body = payload["body"]
        if payload.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        return message.parse_time(json.loads(body).get("enqueued_at"), "enqueued_at")
    except (ValueError, TypeError, KeyError, AttributeError, InvalidMessage):
        return None


def _eta(payload: Any) -> datetime | None:
    try:
        return message.parse_time((payload.get("headers") or {}).get("eta"), "eta")
    except (ValueError, TypeError, AttributeError, InvalidMessage):
        return None


class RedisInspector(QueueInspector):
    """Ready, delayed and reserved are known; consumers are not (Redis does not track them).

    Redis keeps no list of queues (a queue is a list that exists while it holds messages), so
    ``known_queues`` is empty: callers name the queues they want.
    """

    family = "redis"

    def stats(self, names: Iterable[str]) -> list[QueueStats]:
        wanted = list(names)
        now = timezone.now()
        with self.broker.connection() as connection:
            channel = connection.default_channel
            client = channel.client
            held = {name: [0, 0] for name in wanted}  # name -> [delayed, reserved]
            for _, value in client.hscan_iter(channel.unacked_key, count=500):
                try:
                    payload, _exchange, routing_key = json.loads(value)
                except (ValueError, TypeError):
                    continue
                counts = held.get(routing_key)
                if counts is None:
                    continue
                eta = _eta(payload)
                counts[0 if eta is not None and eta > now else 1] += 1
            stats = []
            for name in wanted:
                steps = channel.priority_steps
                keys = list(dict.fromkeys(channel._q_for_pri(name, p) for p in steps))
                with client.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.llen(key)
                        pipe.lindex(key, -1)  # each list's oldest: consumers pop from the right
                    replies = pipe.execute()
                ready = sum(int(n) for n in replies[0::2])
                oldest: float | Unknown | None = None
                tails = [tail for tail in replies[1::2] if tail is not None]
                if tails:
                    published = [_published_at(tail) for tail in tails]
                    if any(at is None for at in published):
                        oldest = UNKNOWN  # not a djworker envelope: its age cannot be read
                    else:
                        first = min(at for at in published if at is not None)
                        oldest = max(0.0, (now - first).total_seconds())
                delayed, reserved = held[name]
                stats.append(QueueStats(name, ready, delayed, reserved, oldest))
        return stats

    def purge(self, name: str) -> int:
        with self.broker.connection() as connection:
            return int(connection.default_channel.queue_purge(name) or 0)
