"""A publisher whose RabbitMQ connection was lost declares its queue again on the new one.

RabbitMQ drops a message published to a queue that does not exist, silently. A broker that
came back without its queues (a node started afresh) has none until someone declares them, so
the publish that reconnects must declare its queue on the new connection, not trust what it
declared on the old one.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable

import pytest
from kombu import Connection

from djworker.broker import Broker
from tests.taskapp.tasks import add

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _waiting_in(amqp_url: str, queue: str) -> int:
    with Connection(amqp_url) as conn:
        _, count, _ = conn.default_channel.queue_declare(queue=queue, passive=True)
        return int(count)


def _delete_queue(amqp_url: str, queue: str) -> None:
    with Connection(amqp_url) as conn:
        conn.default_channel.queue_delete(queue=queue)


def _break_connection(broker: Broker) -> None:
    """Cut the publisher's socket, as a broker restart does."""
    connection = broker._local.connection.connection
    connection.transport.sock.shutdown(socket.SHUT_RDWR)


def test_a_publish_that_reconnects_declares_its_queue_again(
    use_broker: Callable[..., Broker], amqp_url: str
) -> None:
    broker = use_broker(amqp_url)
    queue = f"review-reconnect-{uuid.uuid4().hex[:8]}"
    try:
        add.apply_async((1, 2), queue=queue)
        assert _waiting_in(amqp_url, queue) == 1
        _delete_queue(amqp_url, queue)  # the broker came back without its queues
        _break_connection(broker)
        add.apply_async((3, 4), queue=queue)
        assert _waiting_in(amqp_url, queue) == 1
    finally:
        _delete_queue(amqp_url, queue)


def test_a_batch_that_reconnects_declares_its_queue_again(
    use_broker: Callable[..., Broker], amqp_url: str
) -> None:
    broker = use_broker(amqp_url)
    queue = f"review-reconnect-{uuid.uuid4().hex[:8]}"
    try:
        add.apply_async((1, 2), queue=queue)
        _delete_queue(amqp_url, queue)
        _break_connection(broker)
        add.enqueue_many([(1, 2), (3, 4)], queue=queue)
        assert _waiting_in(amqp_url, queue) == 2
    finally:
        _delete_queue(amqp_url, queue)
