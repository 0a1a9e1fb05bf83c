"""Killed and stopped workers: nothing lost, and only the tasks running at the fault run twice.

Each case runs ``scenario.TASKS`` tasks on redis, RabbitMQ and ``django://`` (a private
PostgreSQL) with the threads and prefork pools; see ``tests/faults/scenario.py`` for its course.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from tests.faults.conftest import ExecutionLog
from tests.faults.scenario import FaultCase, matrix, stack_for
from tests.integration.harness import WorkerProcess

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BROKERS = ["redis", "amqp", "django"]
# Every broker with the threads pool; prefork where it adds something (its children die with a
# killed worker, finish their tasks on a warm stop, are killed on a cold one) on the brokers
# where a case is quickest, which keeps the suite inside CI's time.
THREADS_ON_EVERY_BROKER = [(broker, "threads") for broker in BROKERS]


@pytest.fixture
def make_case(
    request: pytest.FixtureRequest,
    worker_factory: Callable[..., WorkerProcess],
    execution_log: ExecutionLog,
) -> Callable[..., FaultCase]:
    """``make_case(name, broker, pool, **options)``: a case on that broker's stack."""

    def make(name: str, broker: str, pool: str, **options: Any) -> FaultCase:
        stack = stack_for(request, broker)
        return FaultCase(name, stack, pool, execution_log, worker_factory, **options)

    return make


@pytest.mark.parametrize(
    ("broker", "pool"),
    matrix(
        [*THREADS_ON_EVERY_BROKER, ("amqp", "prefork"), ("django", "prefork")],
        smoke=("amqp", "threads"),
    ),
)
def test_a_sigkilled_worker_loses_nothing_and_only_its_running_tasks_run_again(
    broker: str, pool: str, make_case: Callable[..., FaultCase]
) -> None:
    case = make_case("SIGKILL worker", broker, pool)
    worker = case.publish_and_fill()
    worker.signal(signal.SIGKILL)
    worker.wait()
    case.fault_hits()  # after the kill: nothing of that worker can start any more
    case.start_worker()
    case.finish().assert_nothing_lost_and_duplicates_only_where_running()


@pytest.mark.parametrize("broker", BROKERS)
def test_a_sigkilled_prefork_child_runs_its_task_again_and_nothing_else(
    broker: str, make_case: Callable[..., FaultCase]
) -> None:
    case = make_case(
        "SIGKILL prefork child",
        broker,
        "prefork",
        task="faults.run_again_if_lost",
    )
    case.publish_and_fill()
    running = case.log.running()
    key, pid = next((key, pid) for key, pid in case.log.runs() if key in running)
    os.kill(pid, signal.SIGKILL)
    case.running_at_fault = {key}  # the other children were not hit
    outcome = case.finish()
    outcome.assert_nothing_lost_and_duplicates_only_where_running()
    assert outcome.duplicated == {key: 2}


@pytest.mark.parametrize(
    ("broker", "pool"),
    matrix([*THREADS_ON_EVERY_BROKER, ("django", "prefork")], smoke=("django", "threads")),
)
def test_a_warm_stop_finishes_running_tasks_and_nothing_runs_twice(
    broker: str, pool: str, make_case: Callable[..., FaultCase]
) -> None:
    case = make_case("warm stop (SIGTERM)", broker, pool)
    worker = case.publish_and_fill()
    case.fault_hits()
    worker.signal(signal.SIGTERM)
    assert worker.wait(60) == 0, worker.output[-3000:]
    assert not case.log.unfinished(case.running_at_fault), "a running task did not finish"
    case.start_worker()
    outcome = case.finish()
    outcome.assert_nothing_lost_and_duplicates_only_where_running()
    assert outcome.duplicated == {}


@pytest.mark.parametrize(
    ("broker", "pool"),
    matrix([*THREADS_ON_EVERY_BROKER, ("redis", "prefork")], smoke=("redis", "prefork")),
)
def test_a_cold_stop_loses_nothing_and_only_the_interrupted_tasks_run_again(
    broker: str, pool: str, make_case: Callable[..., FaultCase]
) -> None:
    # both ways to ask for it: a second SIGTERM (threads), SIGQUIT (prefork)
    how = "second SIGTERM" if pool == "threads" else "SIGQUIT"
    case = make_case(f"cold stop ({how})", broker, pool)
    worker = case.publish_and_fill()
    case.fault_hits()
    if pool == "threads":
        worker.signal(signal.SIGTERM)
        worker.wait_for_output("warm shutdown")
        worker.signal(signal.SIGTERM)
    else:
        worker.signal(signal.SIGQUIT)
    assert worker.wait(60) == 1, worker.output[-3000:]
    case.start_worker()
    case.finish().assert_nothing_lost_and_duplicates_only_where_running()
