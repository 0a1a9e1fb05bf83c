"""``publish_many`` of djworker's ``django://`` and Redis channels against the real services.

A batch of messages is written in one round trip, all or none, and a plain kombu consumer on
djworker's transport then receives every message, highest priority first, oldest first within
a priority.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from kombu import Connection, Exchange, Queue

from djworker.broker_schemes import BrokerConnection
from djworker.models.broker import QueueMessage
from djworker.transport.redis import Transport as RedisTransport
from tests.integration.harness import unique_queue

STEPS = {"priority_steps": list(range(10))}
COUNT = 60


@pytest.fixture(params=["django", "redis"])
def connection(request: pytest.FixtureRequest) -> Iterator[Connection]:
    if request.param == "django":
        request.getfixturevalue("transactional_db")
        opened = BrokerConnection("django://")
    else:
        url = request.getfixturevalue("redis_url")
        opened = Connection(url, transport=RedisTransport, transport_options=STEPS)
    opened.connect()
    yield opened
    opened.close()


def prepared(channel: Any, count: int, priority_of: Callable[[int], int]) -> list[dict[str, Any]]:
    return [
        channel.prepare_message(
            f'{{"n": {n}}}'.encode(),
            priority_of(n),
            "application/json",
            "utf-8",
            {},
            {"delivery_mode": 2},
        )
        for n in range(count)
    ]


def receive_all(connection: Connection, queue: str, count: int) -> list[int]:
    received: list[int] = []

    def on_message(body: dict[str, int], message: Any) -> None:
        received.append(body["n"])
        message.ack()

    with connection.Consumer(
        Queue(queue, Exchange(""), routing_key=queue), callbacks=[on_message]
    ) as consumer:
        consumer.qos(prefetch_count=1)
        deadline = time.monotonic() + 10
        while len(received) < count and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                connection.drain_events(timeout=0.2)
    return received


def kombu_priority(connection: Connection, djworker_priority: int) -> int:
    # kombu's Redis transport serves lower numbers first; djworker's broker maps onto that.
    if isinstance(connection.transport, RedisTransport):
        return 9 - djworker_priority
    return djworker_priority


def test_a_batch_of_one_priority_is_received_whole_and_in_order(connection: Connection) -> None:
    queue = unique_queue("batch")
    channel = connection.default_channel
    channel.publish_many(queue, prepared(channel, COUNT, lambda n: 0))

    assert receive_all(connection, queue, COUNT) == list(range(COUNT))


def test_a_batch_of_mixed_priorities_is_received_highest_first(connection: Connection) -> None:
    queue = unique_queue("batch")
    channel = connection.default_channel
    priority = {n: (9 if n % 3 == 0 else 0) for n in range(COUNT)}
    messages = prepared(channel, COUNT, lambda n: kombu_priority(connection, priority[n]))
    channel.publish_many(queue, messages)

    high = [n for n in range(COUNT) if priority[n] == 9]
    low = [n for n in range(COUNT) if priority[n] == 0]
    assert receive_all(connection, queue, COUNT) == high + low


@pytest.mark.django_db(transaction=True)
def test_a_django_batch_is_one_insert_statement() -> None:
    queue = unique_queue("batch")
    with BrokerConnection("django://") as connection:
        channel = connection.default_channel
        messages = prepared(channel, COUNT, lambda n: 0)
        with CaptureQueriesContext(db_connection) as queries:
            channel.publish_many(queue, messages)
    inserts = [q["sql"] for q in queries if "INSERT" in q["sql"].upper()]
    if db_connection.vendor == "postgresql":
        assert len(queries) == 1, [q["sql"][:80] for q in queries]
    assert len(inserts) == 1
    assert QueueMessage.objects.filter(queue=queue).count() == COUNT


def test_a_redis_batch_is_one_round_trip(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = unique_queue("batch")
    sends: list[int] = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        sends.append(1)
        original(self, command, check_health)

    with Connection(redis_url, transport=RedisTransport, transport_options=STEPS) as connection:
        channel = connection.default_channel
        for priorities in ((0,), (0, 9)):
            messages = prepared(channel, COUNT, lambda n, p=priorities: p[n % len(p)])
            # A first batch opens the channel's connection, so only the batch itself is counted.
            channel.publish_many(queue, prepared(channel, 1, lambda n: 0))
            sends.clear()
            monkeypatch.setattr(
                redis.connection.AbstractConnection, "send_packed_command", counting
            )
            channel.publish_many(queue, messages)
            monkeypatch.undo()
            assert len(sends) == 1, f"priorities {priorities}: {len(sends)} round trips"
        assert len(receive_all(connection, queue, 2 * COUNT + 2)) == 2 * COUNT + 2
