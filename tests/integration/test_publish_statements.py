"""What one ``.delay()`` costs the database: counted statements, never timed.

The READY row is one statement; on ``django://`` the message is one more. On PostgreSQL the
row's statement also turns off ``synchronous_commit`` for its own transaction (a lost READY row
is written again by the worker), unless the caller's transaction is open: then the row is part
of it, with its durability, and goes if it rolls back.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

import djworker
from djworker import message, result_store
from djworker.models.broker import QueueMessage
from djworker.models.results import TaskResult, TaskStatus
from tests.taskapp import tasks
from tests.taskapp.tasks import add

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_delay_on_django_is_one_statement_for_the_row_and_one_for_the_message(
    use_broker: Callable[..., object],
) -> None:
    use_broker("django://")
    add.delay(0, 0)  # the broker's connection and queue exist before counting
    queued = QueueMessage.objects.count()
    with CaptureQueriesContext(connection) as queries:
        result = add.delay(1, 2)
    statements = [q["sql"] for q in queries]
    # SQLite's transactions are statements too (BEGIN IMMEDIATE, COMMIT), with no round trip.
    inserts = [s for s in statements if s.lstrip().startswith(("INSERT", "WITH"))]
    assert len(inserts) == 2, statements
    if connection.vendor == "postgresql":
        assert len(statements) == 2, statements
    assert TaskResult.objects.get(id=result.id).status == TaskStatus.READY
    assert QueueMessage.objects.count() == queued + 1
    if connection.vendor == "postgresql":
        assert "synchronous_commit" in statements[0]


def test_delay_on_redis_is_one_statement(use_broker: Callable[..., object], redis_url: str) -> None:
    use_broker(redis_url)
    add.delay(0, 0)
    with CaptureQueriesContext(connection) as queries:
        result = add.delay(1, 2)
    statements = [q["sql"] for q in queries]
    assert len([s for s in statements if s.startswith("INSERT")]) == 1, statements
    if connection.vendor == "postgresql":
        assert len(statements) == 1, statements
    assert TaskResult.objects.filter(id=result.id, status=TaskStatus.READY).exists()


def test_inside_a_transaction_the_row_keeps_its_durability_and_goes_with_a_rollback(
    use_broker: Callable[..., object], redis_url: str
) -> None:
    use_broker(redis_url)

    class RolledBack(Exception):
        pass

    with (
        CaptureQueriesContext(connection) as queries,
        pytest.raises(RolledBack),
        transaction.atomic(),
    ):
        result = add.delay(1, 2)
        assert TaskResult.objects.filter(id=result.id).exists()
        raise RolledBack
    assert not any("synchronous_commit" in q["sql"] for q in queries)
    assert not TaskResult.objects.filter(id=result.id).exists()


def test_with_autocommit_off_the_row_does_not_relax_the_callers_transaction(
    use_broker: Callable[..., object], redis_url: str
) -> None:
    """A caller managing its own transaction (autocommit off) keeps its commit's durability."""
    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is PostgreSQL's")
    use_broker(redis_url)
    add.delay(0, 0)
    transaction.set_autocommit(False)
    try:
        result = add.delay(1, 2)
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            (setting,) = cursor.fetchone()
        transaction.commit()
    finally:
        transaction.set_autocommit(True)
    assert setting == "on"
    assert TaskResult.objects.filter(id=result.id, status=TaskStatus.READY).exists()


# Every field the stored READY row holds, as the ORM reads it back.
def stored_fields(task_id: str) -> dict[str, object]:
    row = TaskResult.objects.get(id=task_id)
    return {f.attname: getattr(row, f.attname) for f in TaskResult._meta.concrete_fields}


def orm_fields(task_id: str, **values: object) -> dict[str, object]:
    """The row the ORM writes for the same values: what the single statement must match."""
    TaskResult.objects.create(id=task_id, **values)
    return stored_fields(task_id)


AWKWARD_ARGS = ["é \u2603 'quoted' %s %% \\", {"nested": [1.5, None, True, {"k": "v"}]}]


@pytest.mark.parametrize("countdown", [None, 30])
def test_the_ready_row_of_delay_holds_what_the_orm_would_store(
    use_broker: Callable[..., object], redis_url: str, countdown: int | None
) -> None:
    use_broker(redis_url)
    result = tasks.sleep.apply_async(AWKWARD_ARGS, {"note": "x"}, countdown=countdown)
    stored = stored_fields(result.id)
    expected = orm_fields(
        "orm-" + result.id,
        task_name=tasks.sleep.name,
        args=AWKWARD_ARGS,
        kwargs={"note": "x"},
        queue=stored["queue"],
        enqueued_at=stored["enqueued_at"],
        run_after=stored["run_after"],
    )
    assert (stored["run_after"] is None) == (countdown is None)
    assert {**stored, "id": None} == {**expected, "id": None}


def test_the_ready_row_of_a_redacted_call_and_of_django_tasks_fields_match_the_orm(
    use_broker: Callable[..., object], redis_url: str
) -> None:
    use_broker(redis_url)
    redacted = tasks.check_secret.delay("hunter2", pin=1234)
    stored = stored_fields(redacted.id)
    assert stored["args"] == ["[redacted]"] and stored["kwargs"] == {"pin": "[redacted]"}
    envelope = message.build(
        task_id="with-fields", task_name=tasks.add.name, args=[1], kwargs={}, queue="q", priority=3
    )
    result_store.record_enqueued(envelope, backend="default", task_priority=-20)
    stored = stored_fields("with-fields")
    expected = orm_fields(
        "orm-with-fields",
        task_name=tasks.add.name,
        args=[1],
        kwargs={},
        queue="q",
        priority=3,
        enqueued_at=stored["enqueued_at"],
        backend="default",
        task_priority=-20,
    )
    assert {**stored, "id": None} == {**expected, "id": None}


def test_the_ready_rows_of_enqueue_many_hold_what_delay_stores(
    use_broker: Callable[..., object], redis_url: str
) -> None:
    use_broker(redis_url)
    [bulk] = tasks.sleep.enqueue_many([djworker.Arguments(*AWKWARD_ARGS, note="x")], queue="q")
    single = tasks.sleep.apply_async(AWKWARD_ARGS, {"note": "x"}, queue="q")
    ignored = {"id": None, "enqueued_at": None}
    assert {**stored_fields(bulk.id), **ignored} == {**stored_fields(single.id), **ignored}
