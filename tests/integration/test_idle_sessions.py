"""An idle worker on ``django://`` keeps its PostgreSQL sessions, even with ``CONN_MAX_AGE = 0``.

The worker's sessions carry their own ``application_name`` (tests/settings_prefork.py), so
``pg_stat_activity`` shows exactly its backends; each (pid, start time) is one session.
"""

from __future__ import annotations

import time
import uuid

import pytest
from django.db import connection

from djworker.models import TaskResult
from tests.integration.harness import unique_queue, wait_for
from tests.taskapp import tasks

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WATCH_S = 3.0


def sessions(app_name: str) -> set[tuple[int, object]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, backend_start FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = %s",
            [connection.settings_dict["NAME"], app_name],
        )
        return {(pid, started) for pid, started in cursor.fetchall()}


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_an_idle_django_broker_worker_opens_no_session_while_it_waits(
    worker_factory, use_broker, pool: str
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("these claims are about PostgreSQL sessions")
    use_broker("django://")
    app_name = f"djw-idle-{uuid.uuid4().hex[:8]}"
    queue = unique_queue("idle")
    worker_factory(
        "--pool",
        pool,
        "-c",
        "1" if pool == "solo" else "2",
        "-Q",
        queue,
        broker_url="django://",
        settings="tests.settings_prefork",
        env={"DJWORKER_TEST_APP_NAME": app_name, "CONN_MAX_AGE": "0"},
    )
    result = tasks.noop.apply_async(queue=queue)  # one task run: every session it needs is open
    wait_for(
        lambda: TaskResult.objects.filter(id=result.id, status="SUCCESSFUL").exists(),
        timeout_s=30,
        what="the first task",
    )
    time.sleep(1.0)  # its acks written, the worker back to waiting
    before = sessions(app_name)
    seen = set(before)
    deadline = time.monotonic() + WATCH_S
    while time.monotonic() < deadline:
        seen |= sessions(app_name)
        time.sleep(0.02)
    assert before, "the worker holds no session: is application_name set?"
    assert seen == before, f"sessions opened while idle: {sorted(seen - before)}"
