"""``Task.enqueue_many`` on real brokers with a real worker: everything published runs, a bad
call refuses the lot, a failed publish leaves no READY row behind, and each batch is one round
trip (counted, never timed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

import djworker
from djworker.broker import Broker
from djworker.exceptions import PublishInterrupted
from djworker.models.broker import QueueMessage
from djworker.models.results import TaskResult, TaskStatus
from tests.integration.harness import unique_queue, wait_for
from tests.taskapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

CALLS = 1200  # three batches of the default 500


def queued(broker: Broker, queue: str) -> int:
    with broker.connection() as conn:
        return int(broker.queue(queue)(conn.default_channel).queue_declare().message_count)


def test_every_call_published_at_once_runs_in_a_real_worker(
    worker_factory: Callable[..., Any], every_broker: str
) -> None:
    queue = unique_queue("many")
    calls: list[Any] = [(n, 1) for n in range(CALLS - 2)]
    calls += [{"x": 5, "y": 6}, djworker.Arguments(7, y=8)]

    results = tasks.add.enqueue_many(calls, queue=queue)

    assert len(results) == CALLS
    assert TaskResult.objects.filter(queue=queue, status=TaskStatus.READY).count() == CALLS
    worker_factory("--pool", "threads", "-c", "4", "-Q", queue, broker_url=every_broker)
    wait_for(
        lambda: (
            TaskResult.objects.filter(queue=queue, status=TaskStatus.SUCCESSFUL).count() == CALLS
        ),
        timeout_s=120,
        what=f"{CALLS} calls to run",
    )
    values = dict(TaskResult.objects.filter(queue=queue).values_list("id", "result"))
    assert [values[r.id] for r in results] == [n + 1 for n in range(CALLS - 2)] + [11, 15]


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ((1, {2, 3}), "JSON"),
        ("not a call", "expected a tuple or list"),
        ((1, "nul\x00"), "NUL character"),
    ],
)
def test_one_bad_call_refuses_them_all_and_names_its_index_and_value(
    use_broker: Callable[..., Broker], redis_url: str, bad: Any, problem: str
) -> None:
    broker = use_broker(redis_url)
    queue = unique_queue("many")
    calls: list[Any] = [(n, 1) for n in range(700)]
    calls[601] = bad

    with pytest.raises(TypeError) as refused:
        tasks.add.enqueue_many(calls, queue=queue)

    assert "call 601 of enqueue_many" in str(refused.value)
    assert problem in str(refused.value)
    assert repr(bad)[:20] in str(refused.value)
    assert not TaskResult.objects.filter(queue=queue).exists()
    assert queued(broker, queue) == 0


def test_a_broker_that_cannot_be_reached_leaves_no_ready_row(
    use_broker: Callable[..., Broker],
) -> None:
    # Nothing listens on port 1: every connection attempt is refused at once.
    use_broker("redis://127.0.0.1:1/0")
    queue = unique_queue("many")

    with pytest.raises(PublishInterrupted) as stopped:
        tasks.add.enqueue_many([(n, 1) for n in range(10)], queue=queue)

    assert stopped.value.published == 0
    assert len(stopped.value.results) == 10
    assert not TaskResult.objects.filter(queue=queue).exists()


@pytest.fixture
def second_batch_fails(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The broker fails on its second batch (the one fault injected here; brokers are real)."""
    original = Broker.publish_many
    batches: list[int] = []

    def publish_many(self: Broker, envelopes: Any) -> None:
        batches.append(len(envelopes))
        if len(batches) == 2:
            raise PublishInterrupted("broker gone", published=0) from ConnectionError("gone")
        original(self, envelopes)

    monkeypatch.setattr(Broker, "publish_many", publish_many)
    yield


def test_a_failed_batch_removes_its_rows_and_says_how_many_went_out(
    use_broker: Callable[..., Broker], redis_url: str, second_batch_fails: None
) -> None:
    broker = use_broker(redis_url)
    queue = unique_queue("many")

    with pytest.raises(PublishInterrupted) as stopped:
        tasks.add.enqueue_many([(n, 1) for n in range(CALLS)], queue=queue)

    assert stopped.value.published == 500
    published = {r.id for r in stopped.value.results[:500]}
    assert set(TaskResult.objects.filter(queue=queue).values_list("id", flat=True)) == published
    assert queued(broker, queue) == 500


def test_a_failed_amqp_publish_midway_keeps_the_rows_of_what_went_out(
    use_broker: Callable[..., Broker], amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = use_broker(amqp_url)
    queue = unique_queue("many")
    original = Broker.publish
    sent: list[int] = []

    def publish(self: Broker, envelope: Any, *, validated: bool = False) -> None:
        if len(sent) == 30:
            raise ConnectionError("broker gone")  # the one fault injected here
        sent.append(1)
        original(self, envelope, validated=validated)

    monkeypatch.setattr(Broker, "publish", publish)
    with pytest.raises(PublishInterrupted) as stopped:
        tasks.add.enqueue_many([(n, 1) for n in range(100)], queue=queue, batch_size=40)
    monkeypatch.undo()

    assert stopped.value.published == 30
    published = {r.id for r in stopped.value.results[:30]}
    assert set(TaskResult.objects.filter(queue=queue).values_list("id", flat=True)) == published
    assert queued(broker, queue) == 30


def test_on_django_each_batch_is_one_insert_of_rows_and_one_of_messages(
    use_broker: Callable[..., Broker],
) -> None:
    use_broker("django://")
    queue = unique_queue("many")
    tasks.add.enqueue_many([(0, 0)], queue=queue)  # connection and queue exist before counting

    with CaptureQueriesContext(connection) as queries:
        tasks.add.enqueue_many([(n, 1) for n in range(CALLS)], queue=queue)

    statements = [q["sql"].lstrip() for q in queries]
    if connection.vendor == "postgresql":
        row_inserts = [s for s in statements if s.startswith('INSERT INTO "djworker_taskresult"')]
        message_inserts = [s for s in statements if "djworker_queuemessage" in s]
        assert (len(row_inserts), len(message_inserts), len(statements)) == (3, 3, 6), statements
    else:
        # SQLite caps a statement's parameters, so a batch may take several INSERTs; still
        # one transaction for the rows and one for the messages of each batch.
        assert statements.count("BEGIN IMMEDIATE") == 6, statements
    assert QueueMessage.objects.filter(queue=queue).count() == CALLS + 1


def test_on_redis_each_batch_is_one_round_trip(
    use_broker: Callable[..., Broker], redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = use_broker(redis_url)
    queue = unique_queue("many")
    tasks.add.enqueue_many([(0, 0)], queue=queue)
    sends: list[int] = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        sends.append(1)
        original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    tasks.add.enqueue_many([(n, 1) for n in range(CALLS)], queue=queue)
    monkeypatch.undo()

    assert len(sends) == 3
    assert queued(broker, queue) == CALLS + 1


def test_inside_a_transaction_calls_are_published_on_commit_and_never_on_rollback(
    use_broker: Callable[..., Broker], redis_url: str
) -> None:
    broker = use_broker(redis_url)
    queue = unique_queue("many")

    class RolledBack(Exception):
        pass

    with pytest.raises(RolledBack), transaction.atomic():
        dropped = tasks.add.enqueue_many([(n, 1) for n in range(10)], queue=queue)
        raise RolledBack
    with transaction.atomic():
        kept = tasks.add.enqueue_many([(n, 1) for n in range(10)], queue=queue)
        assert not TaskResult.objects.filter(queue=queue).exists()
        assert queued(broker, queue) == 0

    assert len(dropped) == 10
    rows = set(TaskResult.objects.filter(queue=queue).values_list("id", flat=True))
    assert rows == {r.id for r in kept}
    assert queued(broker, queue) == 10


def test_a_batch_size_that_is_not_a_whole_number_above_zero_is_refused() -> None:
    for bad in (0, -1, 1.5, True, "10"):
        with pytest.raises(
            ValueError, match=f"batch_size expects a whole number >= 1; got {bad!r}"
        ):
            tasks.add.enqueue_many([(1, 2)], batch_size=bad)  # type: ignore[arg-type]


def test_a_task_that_ignores_its_result_is_published_without_rows(
    use_broker: Callable[..., Broker], redis_url: str
) -> None:
    broker = use_broker(redis_url)
    queue = unique_queue("many")

    results = tasks.noop_no_result.enqueue_many([()] * 600, queue=queue)

    assert len({r.id for r in results}) == 600
    assert not TaskResult.objects.filter(queue=queue).exists()
    assert queued(broker, queue) == 600


def test_no_calls_publish_nothing(use_broker: Callable[..., Broker], redis_url: str) -> None:
    use_broker(redis_url)
    with CaptureQueriesContext(connection) as queries:
        assert tasks.add.enqueue_many([]) == []
    assert not queries
