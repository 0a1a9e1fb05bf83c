"""djworker's Redis transport (``djworker.transport.redis``) against the real Redis.

Consumers in other processes are real ``python -m tests.broker.redis_consumer_process``
children. Priorities here are kombu's (lower first on Redis), as every consumer of a queue sees
them; djworker's own 0-9, higher first, is mapped onto them by ``djworker.broker``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Exchange, Message, Queue

from djworker.broker import Broker
from djworker.transport.redis import Transport
from tests.integration.harness import unique_queue

ROOT = Path(__file__).resolve().parents[2]
STEPS = {"priority_steps": list(range(10))}

OpenConnection = Callable[..., Connection]


@pytest.fixture
def queue_name(redis_url: str) -> Iterator[str]:
    """A fresh queue; its lists and its leftovers in ``unacked`` are deleted afterwards."""
    name = unique_queue("redis-transport")
    yield name
    client = redis.Redis.from_url(redis_url)
    client.delete(name, *(f"{name}\x06\x16{pri}" for pri in range(1, 10)))
    for tag, value in client.hgetall("unacked").items():
        if json.loads(value)[2] == name:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)


@pytest.fixture
def store(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture
def open_connection(redis_url: str) -> Iterator[OpenConnection]:
    """Opens connections (djworker's transport unless ``plain=True``); closes them after."""
    opened: list[Connection] = []

    def open_(plain: bool = False, **options: Any) -> Connection:
        transport = None if plain else Transport
        connection = Connection(redis_url, transport=transport, transport_options=STEPS | options)
        connection.connect()
        opened.append(connection)
        return connection

    yield open_
    for connection in opened:
        connection.close()


def publish(connection: Connection, queue: str, body: dict[str, Any], priority: int = 0) -> None:
    connection.Producer().publish(
        body, routing_key=queue, exchange="", priority=priority, declare=[queue_of(queue)]
    )


def queue_of(name: str) -> Queue:
    return Queue(name, Exchange(""), routing_key=name)


def consume(connection: Connection, queue: str, prefetch: int) -> tuple[Consumer, list[Message]]:
    """A consumer with ``prefetch``; the list fills with the messages it receives."""
    received: list[Message] = []
    consumer = connection.Consumer(
        queue_of(queue), callbacks=[lambda body, message: received.append(message)]
    )
    consumer.qos(prefetch_count=prefetch)
    consumer.consume()
    return consumer, received


def drain_until(connection: Connection, received: list[Message], count: int) -> None:
    deadline = time.monotonic() + 10
    while len(received) < count and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            connection.drain_events(timeout=0.2)
    assert len(received) >= count, f"received {len(received)} of {count} messages"


def ready_count(connection: Connection, queue: str) -> int:
    return int(connection.default_channel._size(queue))


def unacked(store: redis.Redis, messages: list[Message]) -> list[bool]:
    return [bool(store.hexists("unacked", message.delivery_tag)) for message in messages]


def start_consumer_process(redis_url: str, *args: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.broker.redis_consumer_process", redis_url, *args],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


def test_a_message_goes_round_trip_and_its_ack_clears_unacked(
    open_connection: OpenConnection, queue_name: str, store: redis.Redis
) -> None:
    connection = open_connection()
    publish(connection, queue_name, {"n": 1})
    _, received = consume(connection, queue_name, prefetch=1)
    drain_until(connection, received, 1)
    assert received[0].payload == {"n": 1}
    assert unacked(store, received) == [True]
    received[0].ack()
    connection.close()
    assert unacked(store, received) == [False]
    assert ready_count(open_connection(), queue_name) == 0


def test_one_drain_takes_as_many_as_the_prefetch_room_in_priority_order(
    open_connection: OpenConnection, queue_name: str, store: redis.Redis
) -> None:
    connection = open_connection()
    for n, priority in enumerate([5, 9, 0, 3, 7, 1, 8, 2, 6, 4]):
        publish(connection, queue_name, {"n": n, "priority": priority}, priority=priority)
    _, received = consume(connection, queue_name, prefetch=4)

    connection.drain_events(timeout=1)  # one call: one batch, the size of the room
    assert [m.payload["priority"] for m in received] == [0, 1, 2, 3]
    assert unacked(store, received) == [True] * 4
    assert ready_count(connection, queue_name) == 6

    received[0].ack()
    received[1].ack()
    connection.drain_events(timeout=1)  # room for two again
    assert [m.payload["priority"] for m in received[4:]] == [4, 5]
    assert unacked(store, received[:2]) == [False, False]  # written with that batch's take
    assert ready_count(connection, queue_name) == 4


def test_a_queue_emptied_by_a_batch_is_then_waited_on_with_brpop(
    open_connection: OpenConnection, queue_name: str, store: redis.Redis
) -> None:
    connection = open_connection()
    publish(connection, queue_name, {"n": 0})
    _, received = consume(connection, queue_name, prefetch=10)
    drain_until(connection, received, 1)
    publish(open_connection(plain=True), queue_name, {"n": 1})
    publish(open_connection(plain=True), queue_name, {"n": 2})
    drain_until(connection, received, 3)
    assert [m.payload["n"] for m in received] == [0, 1, 2]
    assert unacked(store, received) == [True] * 3


@pytest.mark.parametrize("prefetch", [1, 10])
def test_two_consumer_processes_never_receive_the_same_message(
    open_connection: OpenConnection, queue_name: str, redis_url: str, prefetch: int
) -> None:
    consumers = [
        start_consumer_process(redis_url, "drain", queue_name, str(prefetch)) for _ in range(2)
    ]
    try:
        connection = open_connection(plain=True)
        for n in range(300):
            publish(connection, queue_name, {"n": n})
        for consumer in consumers:
            assert consumer.stdin is not None
            consumer.stdin.write("go\n")
            consumer.stdin.flush()
        taken = []
        for consumer in consumers:
            out, _ = consumer.communicate(timeout=60)
            taken.append(json.loads(out))
    finally:
        for consumer in consumers:
            consumer.kill()
    everything = taken[0] + taken[1]
    assert sorted(everything) == list(range(300))  # exact union, no duplicate
    assert ready_count(connection, queue_name) == 0


def test_messages_of_a_killed_consumer_come_back_after_the_visibility_timeout(
    open_connection: OpenConnection, queue_name: str, redis_url: str
) -> None:
    connection = open_connection(plain=True)
    for n in range(3):
        publish(connection, queue_name, {"n": n})
    holder = start_consumer_process(redis_url, "hold", queue_name, "3")
    try:
        assert holder.stdout is not None
        assert sorted(m["n"] for m in json.loads(holder.stdout.readline())) == [0, 1, 2]
    finally:
        holder.send_signal(signal.SIGKILL)  # no close: nothing gives them back but the timeout
        holder.wait()
    assert ready_count(connection, queue_name) == 0

    restorer = open_connection(visibility_timeout=1, unacked_restore_throttle=1)
    _, received = consume(restorer, queue_name, prefetch=10)
    drain_until(restorer, received, 3)
    assert sorted(m.payload["n"] for m in received) == [0, 1, 2]
    assert all(m.delivery_info["redelivered"] for m in received)


def test_unacked_messages_come_back_at_once_when_the_connection_closes(
    open_connection: OpenConnection, queue_name: str, store: redis.Redis
) -> None:
    first = open_connection()
    for n in range(5):
        publish(first, queue_name, {"n": n})
    _, received = consume(first, queue_name, prefetch=5)
    drain_until(first, received, 5)
    first.close()
    assert unacked(store, received) == [False] * 5

    second = open_connection()
    assert ready_count(second, queue_name) == 5
    _, again = consume(second, queue_name, prefetch=5)
    drain_until(second, again, 5)
    assert sorted(m.payload["n"] for m in again) == list(range(5))


def test_acks_still_waiting_for_their_write_are_written_by_a_warm_close(
    open_connection: OpenConnection, queue_name: str, store: redis.Redis
) -> None:
    connection = open_connection()
    for n in range(5):
        publish(connection, queue_name, {"n": n})
    _, received = consume(connection, queue_name, prefetch=5)
    drain_until(connection, received, 5)
    for message in received:
        message.ack()
    assert unacked(store, received) == [True] * 5  # batched: not written yet
    connection.close()
    assert unacked(store, received) == [False] * 5
    assert ready_count(open_connection(), queue_name) == 0  # and not given back either


def test_a_message_published_by_plain_kombu_is_consumed_by_djworkers_transport(
    open_connection: OpenConnection, queue_name: str, store: redis.Redis
) -> None:
    publish(open_connection(plain=True), queue_name, {"from": "kombu"}, priority=3)
    ours = open_connection()
    _, received = consume(ours, queue_name, prefetch=4)
    drain_until(ours, received, 1)
    assert received[0].payload == {"from": "kombu"}
    received[0].ack()
    ours.close()
    assert unacked(store, received) == [False]


def test_a_message_published_by_djworkers_transport_is_consumed_by_plain_kombu(
    open_connection: OpenConnection, queue_name: str, store: redis.Redis
) -> None:
    publish(open_connection(), queue_name, {"from": "djworker"}, priority=3)
    plain = open_connection(plain=True)
    _, received = consume(plain, queue_name, prefetch=4)
    drain_until(plain, received, 1)
    assert received[0].payload == {"from": "djworker"}
    received[0].ack()
    assert unacked(store, received) == [False]


def test_djworker_broker_connections_use_the_batching_transport_only_for_redis() -> None:
    redis_connection = Broker(url="redis://127.0.0.1:6379/0").connection()
    assert redis_connection.get_transport_cls() is Transport
    rediss = Broker(url="rediss://127.0.0.1:6380/0").connection()
    assert rediss.get_transport_cls() is Transport
    assert rediss.ssl  # kombu's own rediss:// handling is kept
    assert Connection("redis://127.0.0.1:6379/0").get_transport_cls() is not Transport


def test_a_no_ack_consumer_leaves_nothing_in_unacked_to_come_back(
    open_connection: OpenConnection, queue_name: str, store: redis.Redis
) -> None:
    connection = open_connection()
    for n in range(3):
        publish(connection, queue_name, {"n": n})
    received: list[Message] = []
    consumer = connection.Consumer(
        queue_of(queue_name), callbacks=[lambda body, message: received.append(message)]
    )
    consumer.qos(prefetch_count=3)
    consumer.consume(no_ack=True)
    drain_until(connection, received, 3)
    assert unacked(store, received) == [False] * 3


def test_messages_left_in_a_batch_after_a_callback_cancels_the_consumer_go_back_in_order(
    open_connection: OpenConnection, queue_name: str, store: redis.Redis
) -> None:
    connection = open_connection()
    for n in range(5):
        publish(connection, queue_name, {"n": n})
    received: list[Message] = []

    def take_one_then_cancel(body: dict[str, Any], message: Message) -> None:
        received.append(message)
        consumer.cancel()

    consumer = connection.Consumer(queue_of(queue_name), callbacks=[take_one_then_cancel])
    consumer.qos(prefetch_count=5)
    consumer.consume()
    connection.drain_events(timeout=1)
    assert [m.payload["n"] for m in received] == [0]
    assert ready_count(connection, queue_name) == 4

    other = open_connection()
    _, rest = consume(other, queue_name, prefetch=4)
    drain_until(other, rest, 4)
    assert [m.payload["n"] for m in rest] == [1, 2, 3, 4]
    assert not any(m.delivery_info.get("redelivered") for m in rest)
