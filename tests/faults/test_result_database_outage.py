"""The results database goes away while tasks run: the broker keeps the tasks, none is lost.

The worker's Django database (results, heartbeats) is a private PostgreSQL the test stops and
starts again; the broker is redis, or ``django://`` keeping its queue in another database
(the test database on the shared server). A task that cannot record its start or its end is
handed back to the broker, so only the tasks running at the outage may run twice.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.faults.conftest import ExecutionLog, PrivateDatabase
from tests.faults.scenario import (
    DJANGO_VISIBILITY_TIMEOUT_S,
    REDIS_VISIBILITY_TIMEOUT_S,
    FaultCase,
    django_stack,
    matrix,
    redis_stack,
)
from tests.integration.harness import WorkerProcess, database_url_for_workers, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    ("broker", "pool"),
    matrix([("redis", "prefork"), ("django", "threads")], smoke=("django", "threads")),
)
def test_tasks_running_while_the_results_database_is_down_are_run_again_not_lost(
    broker: str,
    pool: str,
    private_postgres: PrivateDatabase,
    request: pytest.FixtureRequest,
    worker_factory: Callable[..., WorkerProcess],
    execution_log: ExecutionLog,
) -> None:
    if broker == "redis":
        stack = redis_stack(
            request.getfixturevalue("redis_url"),
            visibility_timeout_s=REDIS_VISIBILITY_TIMEOUT_S,
            use_broker=request.getfixturevalue("use_broker"),
        )
        stack.env.update(private_postgres.env)
    else:
        # the queue in the test database, on the shared server, under the alias "broker"
        queue_url = database_url_for_workers()
        stack = django_stack(
            queue_url,
            env={**private_postgres.env, "DJWORKER_TEST_BROKER_DATABASE_URL": queue_url},
            visibility_timeout_s=DJANGO_VISIBILITY_TIMEOUT_S,
            database="broker",
        )
    case = FaultCase("results database outage", stack, pool, execution_log, worker_factory)
    case.publish_and_fill()
    case.fault_hits()
    server = private_postgres.server
    server.stop()
    case.fault_hits()
    # down until the running tasks have tried to record their end, and failed
    wait_for(
        lambda: not execution_log.running(),
        timeout_s=60,
        what="the tasks running at the outage to return",
    )
    server.start()
    case.finish().assert_nothing_lost_and_duplicates_only_where_running()
