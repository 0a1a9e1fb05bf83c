"""Broker restarts, crashes and dropped connections while tasks run.

Redis and PostgreSQL (behind ``django://``) are private servers the suite starts; RabbitMQ is the
shared server, where only the worker's own connection is closed. With a broker that keeps its
messages nothing is lost and only the tasks running at the fault run twice. A redis without
persistence loses what it held: the documented loss, which the worker warns about.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.faults.conftest import ExecutionLog, PrivateDatabase
from tests.faults.scenario import (
    DJANGO_VISIBILITY_TIMEOUT_S,
    REDIS_VISIBILITY_TIMEOUT_S,
    FaultCase,
    amqp_stack,
    django_stack,
    redis_stack,
)
from tests.faults.servers import PrivateRedis, close_amqp_connections
from tests.integration.harness import WorkerProcess

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


LOST = "lost the broker connection"
RECONNECTED = "reconnected to the broker"


def redis_case(
    name: str, server: PrivateRedis, pool: str, request: pytest.FixtureRequest
) -> FaultCase:
    stack = redis_stack(
        server.url,
        visibility_timeout_s=REDIS_VISIBILITY_TIMEOUT_S,
        use_broker=request.getfixturevalue("use_broker"),
    )
    return FaultCase(
        name,
        stack,
        pool,
        request.getfixturevalue("execution_log"),
        request.getfixturevalue("worker_factory"),
    )


@pytest.mark.parametrize(
    ("crash", "pool"),
    [
        pytest.param(False, "threads", marks=pytest.mark.smoke),
        (False, "prefork"),
        (False, "gevent"),
        (True, "threads"),
    ],
)
def test_a_persistent_redis_that_restarts_or_crashes_loses_nothing(
    crash: bool, pool: str, persistent_redis: PrivateRedis, request: pytest.FixtureRequest
) -> None:
    how = "crash (SIGKILL)" if crash else "restart"
    case = redis_case(f"redis {how}, append-only file", persistent_redis, pool, request)
    worker = case.publish_and_fill()
    case.fault_hits()
    persistent_redis.crash() if crash else persistent_redis.stop()
    case.fault_hits()
    persistent_redis.start()
    worker.wait_for_output(LOST, timeout_s=30)
    worker.wait_for_output(RECONNECTED, timeout_s=60)
    case.finish().assert_nothing_lost_and_duplicates_only_where_running()


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_a_redis_without_persistence_loses_only_what_it_held_and_the_worker_warns(
    pool: str, private_redis: PrivateRedis, request: pytest.FixtureRequest
) -> None:
    case = redis_case("redis restart, no persistence", private_redis, pool, request)
    worker = case.publish_and_fill()
    case.fault_hits()
    private_redis.stop()
    case.fault_hits()
    private_redis.start()
    worker.wait_for_output(RECONNECTED, timeout_s=60)
    outcome = case.finish(expect_lost=True)
    outcome.assert_duplicates_only_where_running()
    # the documented loss: what waited at the broker or in the prefetch window, never a task
    # that was running (it completes, and its acknowledgement finds nothing to remove)
    assert not set(outcome.lost) & case.running_at_fault
    assert "redis has no persistence" in worker.output


@pytest.mark.parametrize(
    ("crash", "pool"),
    [(False, "threads"), (False, "prefork"), (True, "threads")],
)
def test_a_postgresql_behind_django_broker_that_restarts_or_crashes_loses_nothing(
    crash: bool,
    pool: str,
    private_postgres: PrivateDatabase,
    worker_factory: Callable[..., WorkerProcess],
    execution_log: ExecutionLog,
) -> None:
    how = "crash (SIGKILL)" if crash else "restart"
    stack = django_stack(
        private_postgres.url,
        env=private_postgres.env,
        visibility_timeout_s=DJANGO_VISIBILITY_TIMEOUT_S,
    )
    case = FaultCase(f"PostgreSQL {how}", stack, pool, execution_log, worker_factory)
    worker = case.publish_and_fill()
    case.fault_hits()
    private_postgres.server.crash() if crash else private_postgres.server.stop()
    case.fault_hits()
    private_postgres.server.start()
    worker.wait_for_output(LOST, timeout_s=30)
    worker.wait_for_output(RECONNECTED, timeout_s=60)
    case.finish().assert_nothing_lost_and_duplicates_only_where_running()


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_a_closed_rabbitmq_connection_loses_nothing(
    pool: str,
    amqp_url: str,
    amqp_vhost: str,
    use_broker: Callable[..., object],
    worker_factory: Callable[..., WorkerProcess],
    execution_log: ExecutionLog,
) -> None:
    stack = amqp_stack(amqp_url, use_broker=use_broker)
    # rabbitmqctl takes a second or two to find and close the connection: longer tasks, so
    # the first wave is still running when it is closed
    case = FaultCase(
        "RabbitMQ connection closed",
        stack,
        pool,
        execution_log,
        worker_factory,
        task_seconds=3.0,
    )
    worker = case.publish_and_fill()
    assert worker.process is not None
    case.fault_hits()
    assert close_amqp_connections(worker.process.pid, amqp_vhost) >= 1
    case.fault_hits()
    worker.wait_for_output(LOST, timeout_s=30)
    worker.wait_for_output(RECONNECTED, timeout_s=60)
    case.finish().assert_nothing_lost_and_duplicates_only_where_running()
