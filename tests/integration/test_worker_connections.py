"""What task code sees of database connections in a worker, on the real PostgreSQL.

``execute()`` runs in this test's thread as in a slot of a worker (``worker_connections`` on):
the thread's connection is the worker's own, task code gets one of its own, handled as around
a request with ``CONN_MAX_AGE = 0``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from django.db import connection, transaction

import djworker
from djworker import message, worker_connections
from djworker.execution import execute
from djworker.job import Job, OutcomeKind
from djworker.models import TaskResult

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


@djworker.task(name="tests.worker_connections.backend")
def task_backend() -> int:
    """The PostgreSQL session task code is given."""
    return _backend_pid()


@djworker.task(name="tests.worker_connections.leave_a_transaction_open")
def leave_a_transaction_open() -> int:
    """Open a transaction and never end it (a bug in task code)."""
    transaction.atomic().__enter__()
    return _backend_pid()


@pytest.fixture
def in_a_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if connection.vendor != "postgresql":
        pytest.skip("these claims are about PostgreSQL sessions")
    assert connection.settings_dict["CONN_MAX_AGE"] == 0
    settings = connection.settings_dict
    monkeypatch.setattr(worker_connections, "_enabled", True)
    try:
        yield
    finally:
        worker_connections.close_task_connections()
        # The run made this thread's connection the worker's own (never obsolete): undo that.
        connection.close()
        connection.settings_dict = settings


def _run(task: djworker.Task) -> tuple[str, int]:  # type: ignore[type-arg]
    task_id = str(uuid.uuid4())
    envelope = message.build(
        task_id=task_id, task_name=task.name, args=[], kwargs={}, queue="q", priority=0
    )
    outcome = execute(Job(1, envelope, hostname="here"))
    assert outcome.kind is OutcomeKind.SUCCEEDED, outcome
    return task_id, TaskResult.objects.get(pk=task_id).result


def test_task_code_gets_a_session_of_its_own_closed_after_each_run(in_a_worker: None) -> None:
    own = _backend_pid()
    _, first = _run(task_backend)
    _, second = _run(task_backend)
    assert own not in (first, second)  # the worker writes the results on its own session
    assert first != second  # CONN_MAX_AGE=0: the task's session ended with its run
    assert _backend_pid() == own  # the worker's stays open across tasks
    sessions = TaskResult.objects.raw(
        "SELECT 1 AS id FROM pg_stat_activity WHERE pid = ANY(%s)", [[first, second]]
    )
    assert not list(sessions)


def test_a_transaction_the_task_leaves_open_does_not_hold_back_its_result(
    in_a_worker: None,
) -> None:
    task_id, task_session = _run(leave_a_transaction_open)
    # Stored and committed on the worker's session; the task's was closed (rolled back).
    row = TaskResult.objects.get(pk=task_id)
    assert row.status == "SUCCESSFUL" and row.result == task_session
    assert not connection.in_atomic_block


def test_the_worker_keeps_its_session_when_its_socket_number_is_past_1024(
    in_a_worker: None,
) -> None:
    """A busy worker process holds many files; the liveness check must not need a small fd."""
    connection.close()
    padding = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        own = _backend_pid()
        assert connection.connection.pgconn.socket > 1024
        _run(task_backend)
        _run(task_backend)
        assert _backend_pid() == own
    finally:
        for fd in padding:
            os.close(fd)
