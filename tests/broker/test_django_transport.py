"""The ``django://`` kombu transport against the real test database (PostgreSQL or SQLite).

Consumers in other processes are real ``python -m tests.broker.consumer_process`` children
pointed at the same test database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection as db_connection
from kombu import Connection, Exchange, Queue
from kombu.simple import SimpleQueue

from djworker.broker_schemes import BrokerConnection
from djworker.models.broker import QueueMessage
from djworker.transport import Transport

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "transport-tests"

OpenConnection = Callable[..., Connection]


@pytest.fixture
def open_connection() -> Iterator[OpenConnection]:
    """Opens ``django://`` connections with the given transport options; closes them after."""
    opened: list[Connection] = []

    def open_(**transport_options: Any) -> Connection:
        connection = BrokerConnection("django://", transport_options=transport_options)
        connection.connect()
        opened.append(connection)
        return connection

    yield open_
    for connection in opened:
        connection.close()


def queue_of(name: str = QUEUE) -> Queue:
    return Queue(name, Exchange(""), routing_key=name)


def simple_queue(connection: Connection, name: str = QUEUE) -> SimpleQueue:
    return connection.SimpleQueue(queue_of(name))


def publish(connection: Connection, body: Any, name: str = QUEUE, **kwargs: Any) -> None:
    connection.Producer().publish(
        body, routing_key=name, declare=[queue_of(name)], serializer="json", **kwargs
    )


def eventually(predicate: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    """Whether ``predicate`` holds within ``timeout_s``: acks are written in batches."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def queue_is_empty(name: str = QUEUE) -> bool:
    return not QueueMessage.objects.filter(queue=name).exists()


def child_database_url() -> str:
    """The URL of the test database pytest-django created, for consumer subprocesses."""
    settings = db_connection.settings_dict
    if db_connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    password = f":{settings['PASSWORD']}" if settings["PASSWORD"] else ""
    return (
        f"postgres://{settings['USER']}{password}@{settings['HOST']}:{settings['PORT']}"
        f"/{settings['NAME']}"
    )


def start_consumer_process(*args: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DATABASE_URL": child_database_url(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.broker.consumer_process", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


def test_the_django_url_resolves_to_the_djworker_transport() -> None:
    with BrokerConnection("django://") as connection:
        assert isinstance(connection.transport, Transport)


def test_a_published_message_is_delivered_and_deleted_on_ack(
    open_connection: OpenConnection,
) -> None:
    connection = open_connection()
    queue = simple_queue(connection)
    queue.put({"n": 1})

    message = queue.get(timeout=2)

    assert message.payload == {"n": 1}
    assert message.delivery_info["redelivered"] is False
    assert QueueMessage.objects.filter(queue=QUEUE).count() == 1  # leased, not gone yet
    message.ack()
    assert eventually(queue_is_empty)
    with pytest.raises(queue.Empty):
        queue.get(timeout=0.2)


def test_higher_priorities_are_delivered_first_and_equal_ones_in_publish_order(
    open_connection: OpenConnection,
) -> None:
    connection = open_connection()
    for n, priority in enumerate([0, 5, 9, 1, 5]):
        publish(connection, {"n": n}, priority=priority)
    queue = simple_queue(connection)

    order = []
    for _ in range(5):
        message = queue.get(timeout=2)
        order.append(message.payload["n"])
        message.ack()

    assert order == [2, 1, 4, 3, 0]


def test_a_message_with_an_eta_is_delivered_when_due_and_not_before(
    open_connection: OpenConnection,
) -> None:
    connection = open_connection()
    due = datetime.now(UTC) + timedelta(seconds=1)
    publish(connection, {"n": 1}, headers={"eta": due.isoformat()})
    queue = simple_queue(connection)

    with pytest.raises(queue.Empty):
        queue.get(timeout=0.3)
    message = queue.get(timeout=3)
    delivered = datetime.now(UTC)

    assert message.payload == {"n": 1}
    assert due <= delivered < due + timedelta(seconds=0.5)
    message.ack()


def test_a_requeued_message_is_delivered_again_at_once(open_connection: OpenConnection) -> None:
    connection = open_connection()
    queue = simple_queue(connection)
    queue.put({"n": 1})

    queue.get(timeout=2).requeue()
    again = queue.get(timeout=0.5)

    assert again.payload == {"n": 1}
    assert again.delivery_info["redelivered"] is True
    again.ack()


def test_a_rejected_message_is_deleted(open_connection: OpenConnection) -> None:
    connection = open_connection()
    queue = simple_queue(connection)
    queue.put({"n": 1})

    queue.get(timeout=2).reject()

    assert eventually(queue_is_empty)


def test_closing_a_connection_puts_its_unacked_messages_back_at_once(
    open_connection: OpenConnection,
) -> None:
    holder = open_connection()
    simple_queue(holder).put({"n": 1})
    assert simple_queue(holder).get(timeout=2).payload == {"n": 1}

    holder.close()
    message = simple_queue(open_connection()).get(timeout=0.5)

    assert message.payload == {"n": 1}
    assert message.delivery_info["redelivered"] is True
    message.ack()


def test_size_counts_ready_messages_and_purge_spares_held_ones(
    open_connection: OpenConnection,
) -> None:
    connection = open_connection()
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    for n in range(3):
        publish(connection, {"n": n})
    publish(connection, {"n": 3}, headers={"eta": later})
    queue = simple_queue(connection)
    held = queue.get(timeout=2)

    assert queue.qsize() == 2  # one held, one waiting for its eta
    assert queue.clear() == 3
    assert list(QueueMessage.objects.values_list("lease", flat=True)) == [held.delivery_tag]
    held.ack()
    assert eventually(queue_is_empty)


def test_a_live_workers_message_is_never_redelivered_but_a_killed_workers_comes_back(
    open_connection: OpenConnection,
) -> None:
    publish(open_connection(), {"n": 7})
    holder = start_consumer_process("hold", QUEUE, "1")
    try:
        assert holder.stdout is not None
        assert json.loads(holder.stdout.readline()) == {"n": 7}
        queue = simple_queue(open_connection())

        # Three visibility timeouts: only lease renewal keeps the message away from us.
        with pytest.raises(queue.Empty):
            queue.get(timeout=3)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=5)
        killed = time.monotonic()
        message = queue.get(timeout=3)
    finally:
        holder.kill()
        holder.wait()

    assert message.payload == {"n": 7}
    assert message.delivery_info["redelivered"] is True
    assert time.monotonic() - killed < 1.6  # one timeout after the last renewal, plus slack
    message.ack()


@pytest.mark.parametrize("prefetch", [None, 10], ids=["one-by-one", "batch-claims"])
def test_two_consumer_processes_never_receive_the_same_message(
    open_connection: OpenConnection, prefetch: int | None
) -> None:
    extra = [] if prefetch is None else [str(prefetch)]
    consumers = [start_consumer_process("drain", QUEUE, *extra) for _ in range(2)]
    try:
        connection = open_connection()
        for n in range(300):
            publish(connection, {"n": n})
        for consumer in consumers:
            assert consumer.stdin is not None
            consumer.stdin.write("go\n")
            consumer.stdin.flush()
        taken = [json.loads(consumer.communicate(timeout=20)[0]) for consumer in consumers]
    finally:
        for consumer in consumers:
            consumer.kill()
            consumer.wait()

    everything = taken[0] + taken[1]
    assert sorted(everything) == list(range(300))  # each exactly once
    assert taken[0] and taken[1], "both consumers should have competed for the messages"
    assert not QueueMessage.objects.exists()


def test_notify_wakes_an_idle_consumer_long_before_its_polling_interval(
    open_connection: OpenConnection,
) -> None:
    if db_connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY exists on PostgreSQL only; other databases poll")
    listening = threading.Event()
    received: list[float] = []
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            with BrokerConnection("django://", transport_options={"polling_interval": 5.0}) as conn:

                def on_message(body: Any, message: Any) -> None:
                    received.append(time.monotonic())
                    message.ack()

                with conn.Consumer(queue_of(), callbacks=[on_message], accept=["json"]):
                    listening.set()
                    conn.drain_events(timeout=5)
        except BaseException as exc:
            errors.append(exc)
        finally:
            db_connection.close()  # this thread's own connection to the test database

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert listening.wait(5)
    time.sleep(0.5)  # let it find the queue empty and start waiting
    publish(open_connection(), {"n": 1})
    published = time.monotonic()
    consumer.join(timeout=6)

    assert not errors
    assert received, "the consumer got nothing within its 5 s drain_events timeout"
    assert received[0] - published < 0.5


def claims_in_batches() -> bool:
    """SQLite claims one message at a time (see ``Channel._claim_guarded``)."""
    return bool(db_connection.features.has_select_for_update_skip_locked)


def leased_count(name: str = QUEUE) -> int:
    return QueueMessage.objects.filter(queue=name).exclude(lease="").count()


class Collector:
    """A consumer callback that keeps the kombu messages it receives, unacknowledged."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    def __call__(self, body: Any, message: Any) -> None:
        self.messages.append(message)

    @property
    def bodies(self) -> list[Any]:
        return [message.payload["n"] for message in self.messages]


def consume(connection: Connection, prefetch: int) -> Collector:
    collector = Collector()
    consumer = connection.Consumer(queue_of(), callbacks=[collector], accept=["json"])
    consumer.qos(prefetch_count=prefetch)
    consumer.consume()
    return collector


def test_a_consumer_claims_as_many_messages_as_its_prefetch_has_room_for_in_one_go(
    open_connection: OpenConnection,
) -> None:
    if not claims_in_batches():
        pytest.skip("this database claims one message at a time")
    connection = open_connection()
    for n, priority in enumerate([0, 0, 9, 0, 0]):
        publish(connection, {"n": n}, priority=priority)
    collector = consume(connection, prefetch=3)

    connection.drain_events(timeout=2)

    assert collector.bodies == [2]
    assert leased_count() == 3  # one delivered, two claimed for the next drains
    connection.drain_events(timeout=2)
    connection.drain_events(timeout=2)
    assert collector.bodies == [2, 0, 1]  # priority, then publish order, within the batch too
    assert leased_count() == 3
    with pytest.raises(TimeoutError):
        connection.drain_events(timeout=0.2)  # prefetch full: nothing more is claimed
    assert leased_count() == 3


def test_claimed_but_undelivered_messages_go_back_at_once_when_the_connection_closes(
    open_connection: OpenConnection,
) -> None:
    holder = open_connection()
    for n in range(5):
        publish(holder, {"n": n})
    collector = consume(holder, prefetch=10)
    holder.drain_events(timeout=2)
    assert collector.bodies == [0]
    assert leased_count() == (5 if claims_in_batches() else 1)

    holder.close()
    assert leased_count() == 0
    queue = simple_queue(open_connection())
    again = [queue.get(timeout=0.5) for _ in range(5)]

    # Only the one message the closed consumer saw counts as redelivered.
    redelivered = {m.payload["n"]: m.delivery_info["redelivered"] for m in again}
    assert redelivered == {0: True, 1: False, 2: False, 3: False, 4: False}


def test_cancelling_a_consumer_gives_back_the_messages_it_claimed_for_later(
    open_connection: OpenConnection,
) -> None:
    connection = open_connection()
    for n in range(4):
        publish(connection, {"n": n})
    collector = Collector()
    consumer = connection.Consumer(queue_of(), callbacks=[collector], accept=["json"])
    consumer.qos(prefetch_count=10)
    consumer.consume()
    connection.drain_events(timeout=2)
    assert leased_count() == (4 if claims_in_batches() else 1)

    consumer.cancel()

    assert leased_count() == 1  # the delivered one stays with its consumer until settled
    assert simple_queue(open_connection()).qsize() == 3


def test_acks_are_written_by_a_warm_close_even_before_their_batch_is_due(
    open_connection: OpenConnection,
) -> None:
    connection = open_connection()
    for n in range(3):
        publish(connection, {"n": n})
    collector = consume(connection, prefetch=10)
    for _ in range(3):
        connection.drain_events(timeout=2)
    for message in collector.messages:
        message.ack()
    assert QueueMessage.objects.filter(queue=QUEUE).count() == 3  # acks wait for their batch

    connection.close()

    assert queue_is_empty()


def test_acks_are_written_even_while_the_consumer_stops_draining(
    open_connection: OpenConnection,
) -> None:
    connection = open_connection()
    publish(connection, {"n": 1})
    collector = consume(connection, prefetch=4)
    connection.drain_events(timeout=2)

    collector.messages[0].ack()  # and no drain_events after it, like a paused worker

    assert eventually(queue_is_empty)


def test_the_consumers_writes_skip_the_wal_flush_but_never_relax_a_callers_transaction(
    open_connection: OpenConnection,
) -> None:
    if db_connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is a PostgreSQL setting")
    from django.db import transaction

    from djworker.transport.database import redeliverable_transaction

    def setting() -> str:
        with db_connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            return str(cursor.fetchone()[0])

    with redeliverable_transaction("default"):
        assert setting() == "off"
    assert setting() == "on"
    with transaction.atomic():
        with redeliverable_transaction("default"):
            assert setting() == "on"
        assert setting() == "on"


def test_acks_whose_delete_failed_are_written_by_the_next_flush(
    open_connection: OpenConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    from djworker.transport import leases

    monkeypatch.setattr(leases, "ACK_BACKSTOP_S", 3600.0)  # no background flush in between
    connection = open_connection()
    publish(connection, {"n": 1})
    collector = consume(connection, prefetch=4)
    connection.drain_events(timeout=2)
    keeper = connection.transport.leases
    ops = keeper.ops
    real_delete = ops.delete_settled

    def fail_once(**batch: Any) -> int:
        monkeypatch.setattr(ops, "delete_settled", real_delete)
        raise OperationalError("database went away")

    monkeypatch.setattr(ops, "delete_settled", fail_once)
    collector.messages[0].ack()

    with pytest.raises(OperationalError):
        keeper.flush()
    assert keeper.settled_count() == 1
    assert keeper.flush() == 1
    assert queue_is_empty()
