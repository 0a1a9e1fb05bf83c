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

from djworker.models.broker import QueueMessage
from djworker.models.results import TaskResult, TaskStatus
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
