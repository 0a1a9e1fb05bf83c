"""``django://``: a PostgreSQL restart reruns only the tasks running at the fault.

The broker and the results live in a private PostgreSQL cluster, restarted under a busy
worker. Messages the worker had reserved and not started must not start after the fault: the
broker gives them back, and they run once, on the reconnected worker.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import psycopg
import pytest

from tests.faults.conftest import ExecutionLog, PrivateDatabase
from tests.faults.producer import publish
from tests.integration.harness import WorkerProcess, unique_queue, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration]

CONCURRENCY = 4


def queue_rows(database: PrivateDatabase) -> int:
    try:
        with psycopg.connect(database.url, connect_timeout=2) as connection:
            row = connection.execute("SELECT count(*) FROM djworker_queuemessage").fetchone()
    except psycopg.OperationalError:
        return -1
    return int(row[0]) if row else -1


def test_a_postgresql_restart_reruns_only_the_tasks_running_at_the_fault(
    private_postgres: PrivateDatabase,
    worker_factory: Callable[..., WorkerProcess],
    execution_log: ExecutionLog,
) -> None:
    queue = unique_queue()
    keys = publish(
        queue=queue, prefix="k", count=6 * CONCURRENCY, env=private_postgres.env, seconds=2.0
    )
    worker = worker_factory(
        "--pool",
        "threads",
        "-c",
        str(CONCURRENCY),
        "-Q",
        queue,
        env={
            **execution_log.env,
            **private_postgres.env,
            "DJWORKER_BROKER_URL": "django://",
            "DJWORKER_BROKER_TRANSPORT_OPTIONS": json.dumps({"visibility_timeout": 4}),
        },
    )
    wait_for(lambda: len(execution_log.runs()) == CONCURRENCY, what="the first runs to start")
    time.sleep(0.5)
    private_postgres.server.restart()
    worker.wait_for_output("reconnected to the broker", timeout_s=60)

    wait_for(
        lambda: not execution_log.lost(keys) and queue_rows(private_postgres) == 0,
        timeout_s=120,
        interval_s=0.5,
        what=f"every task to run and settle; ran {execution_log.counts()}",
    )
    extra_runs = sum(n - 1 for n in execution_log.duplicated().values())
    assert extra_runs <= CONCURRENCY, (execution_log.duplicated(), str(worker.log_path))
