"""What the ``django://`` statements cost on PostgreSQL: partial indexes, dead rows, idle queries.

Nothing here is timed. The claims are checked through PostgreSQL's own accounts: the plan's
index names, the buffers a statement touched (``EXPLAIN (ANALYZE, BUFFERS)``), the queries a
consumer sent (Django's query capture) and the sessions a real worker holds
(``pg_stat_activity``).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection as db_connection
from django.db import transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from kombu import Connection, Exchange, Queue

from djworker.broker_schemes import BrokerConnection
from djworker.models.broker import QueueMessage
from djworker.transport import operations, postgres
from djworker.transport.postgres import PostgresOperations

pytestmark = pytest.mark.django_db(transaction=True)

TABLE = QueueMessage._meta.db_table
DEAD_ROWS = 20_000


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    if db_connection.vendor != "postgresql":
        pytest.skip("partial indexes, dead row versions and NOTIFY are PostgreSQL's")


@pytest.fixture
def queue_name() -> str:
    return f"sql-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def connection() -> Iterator[Connection]:
    opened = BrokerConnection("django://", transport_options={"polling_interval": 5.0})
    opened.connect()
    yield opened
    opened.close()


def publish(connection: Connection, name: str, body: Any, **kwargs: Any) -> None:
    queue = Queue(name, Exchange(""), routing_key=name)
    connection.Producer().publish(body, routing_key=name, declare=[queue], **kwargs)


def plan(sql: str, params: list[Any], *, analyze: bool = False) -> dict[str, Any]:
    """The plan of ``sql``; with ``analyze`` it runs, inside a transaction rolled back after."""
    options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
    with transaction.atomic():
        with db_connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN ({options}) {sql}", params)
            found = cursor.fetchone()[0]
        transaction.set_rollback(True)
    tree = json.loads(found) if isinstance(found, str) else found
    return tree[0]["Plan"]  # type: ignore[no-any-return]


def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from nodes(child)


def index_names(node: dict[str, Any]) -> set[str]:
    return {found["Index Name"] for found in nodes(node) if "Index Name" in found}


def buffers(node: dict[str, Any]) -> int:
    return int(node.get("Shared Hit Blocks", 0)) + int(node.get("Shared Read Blocks", 0))


def statements(queue: str, *, window_s: float | None) -> dict[str, tuple[str, list[Any]]]:
    """The claim, the idle query and the release of ``queue``, as the transport sends them."""
    ops = PostgresOperations("default")
    until = timezone.now() + timedelta(hours=1)
    window = postgres.WHOLE_QUEUE_S if window_s is None else window_s
    return {
        "claim": (
            ops._statement(postgres.CLAIM_SQL),
            ["t.", until, postgres.PRIORITIES_HIGH_FIRST, queue, window, 10, 10],
        ),
        "idle": (ops._statement(postgres.NEXT_DUE_SQL), [[queue], timezone.now()]),
        "release": (ops._statement(postgres.RELEASE_SQL), [queue, "channel"]),
    }


def fill(queue: str, *, ready: int, leased: int) -> None:
    now = timezone.now()
    rows = [QueueMessage(queue=queue, payload="{}", visible_at=now) for _ in range(ready)]
    rows += [
        QueueMessage(queue=queue, payload="{}", lease=f"l{n}", visible_at=now + timedelta(hours=1))
        for n in range(leased)
    ]
    QueueMessage.objects.bulk_create(rows)


def test_postgresql_has_the_partial_indexes_and_autovacuum_settings_of_the_migration() -> None:
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [TABLE])
        indexes = dict(cursor.fetchall())
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [TABLE])
        options = cursor.fetchone()[0]
    assert "WHERE ((lease)::text = ''::text)" in indexes["djworker_qmsg_ready_idx"]
    assert "WHERE ((lease)::text = ''::text)" in indexes["djworker_qmsg_due_idx"]
    assert "WHERE ((lease)::text <> ''::text)" in indexes["djworker_qmsg_leased_idx"]
    assert "autovacuum_vacuum_threshold=1000" in options
    assert "autovacuum_vacuum_scale_factor=0" in options


def test_the_claim_the_idle_query_and_the_release_read_their_partial_index(
    queue_name: str,
) -> None:
    for other in range(20):
        fill(f"{queue_name}-{other}", ready=100, leased=100)
    fill(queue_name, ready=100, leased=100)
    with db_connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {TABLE}")
    for window_s in (None, 2.0):
        planned = {  # the claim also finds the rows it updates by primary key
            name: index_names(plan(sql, params)) - {f"{TABLE}_pkey"}
            for name, (sql, params) in statements(queue_name, window_s=window_s).items()
        }
        assert planned == {
            "claim": {"djworker_qmsg_ready_idx"},
            "idle": {"djworker_qmsg_due_idx"},
            "release": {"djworker_qmsg_leased_idx"},
        }, f"window_s={window_s}"


@pytest.fixture
def dead_rows(queue_name: str) -> Iterator[None]:
    """``DEAD_ROWS`` messages of the queue, inserted and deleted with autovacuum off."""
    with db_connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} SET (autovacuum_enabled = false)")
        cursor.execute(
            f"INSERT INTO {TABLE} (queue, priority, payload, visible_at, created_at, lease, "
            "deliveries) SELECT %s, 0, '{}', now() - interval '1 minute', now(), '', 0 "
            "FROM generate_series(1, %s)",
            [queue_name, DEAD_ROWS],
        )
        cursor.execute(f"DELETE FROM {TABLE} WHERE queue = %s", [queue_name])
    yield
    with db_connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} RESET (autovacuum_enabled)")


@pytest.mark.usefixtures("dead_rows")
def test_dead_rows_are_not_read_by_a_windowed_claim_nor_by_the_idle_query(
    queue_name: str,
) -> None:
    fill(queue_name, ready=1, leased=0)
    whole = statements(queue_name, window_s=None)
    windowed = statements(queue_name, window_s=2.0)
    for _ in range(2):  # the first scan marks the dead index entries; count the second
        read_whole = buffers(plan(*whole["claim"], analyze=True))
    read_windowed = buffers(plan(*windowed["claim"], analyze=True))
    read_idle = buffers(plan(*windowed["idle"], analyze=True))
    # A whole-queue claim (the poll's, once per interval) still walks the dead index entries,
    # some hundred pages for 20,000 of them; a claim between polls reads three pages per
    # priority whatever lies before its window, and the idle query a handful.
    assert read_whole > read_windowed + 80, (read_whole, read_windowed)
    assert read_windowed <= 10 * 3 + 10, read_windowed
    assert read_idle < 10, read_idle


def test_an_idle_consumer_sends_no_query_until_a_notify_names_its_queue(
    connection: Connection, queue_name: str
) -> None:
    received: list[Any] = []
    queue = Queue(queue_name, Exchange(""), routing_key=queue_name)
    with connection.Consumer(queue, callbacks=[lambda body, message: received.append(body)]):
        with pytest.raises(TimeoutError):
            connection.drain_events(timeout=0.3)  # the first poll finds the queue empty
        with CaptureQueriesContext(db_connection) as idle:
            for _ in range(3):
                with pytest.raises(TimeoutError):
                    connection.drain_events(timeout=0.2)
        publish(connection, queue_name, {"n": 1})
        with CaptureQueriesContext(db_connection) as woken:
            connection.drain_events(timeout=2)
    assert [query["sql"] for query in idle] == []
    assert received == [{"n": 1}]
    assert len(woken) == 1, [query["sql"][:60] for query in woken]  # the claim, nothing else
    assert "UPDATE" in woken[0]["sql"]


def test_a_countdown_message_wakes_an_idle_consumer_when_due_without_waiting_for_the_poll(
    queue_name: str,
) -> None:
    received: list[float] = []
    listening = threading.Event()

    def consume() -> None:
        try:
            with BrokerConnection("django://", transport_options={"polling_interval": 5.0}) as c:
                queue = Queue(queue_name, Exchange(""), routing_key=queue_name)
                on_message = lambda body, message: received.append(time.monotonic())  # noqa: E731
                with c.Consumer(queue, callbacks=[on_message]):
                    with pytest.raises(TimeoutError):
                        c.drain_events(timeout=0.3)  # polled: now only NOTIFY or a due time
                    listening.set()
                    c.drain_events(timeout=4.5)
        finally:
            db_connection.close()

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert listening.wait(5)
    eta = datetime.now(UTC) + timedelta(seconds=1)
    with BrokerConnection("django://") as publisher:
        publish(publisher, queue_name, {"n": 1}, headers={"eta": eta.isoformat()})
    published = time.monotonic()
    consumer.join(6)
    assert received, "the countdown message was not delivered within 4.5 s"
    assert 0.8 < received[0] - published < 2.5


def test_the_vendor_picks_the_statements_once() -> None:
    assert type(operations.operations_for("default")) is PostgresOperations
