"""A message delivered again while the same worker still runs it waits, and never runs twice.

RabbitMQ hands back a connection's unacknowledged messages the moment it closes, so closing a
worker's connection while a long task runs brings that task's message straight back to the
same, reconnected worker. The first run goes on (its outcome can no longer be acknowledged);
the redelivery must wait for it, then be acknowledged without running again.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.faults.conftest import ExecutionLog
from tests.faults.servers import close_amqp_connections
from tests.integration.harness import WorkerProcess, unique_queue, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_redelivery_of_a_task_still_running_on_the_same_worker_does_not_run_beside_it(
    amqp_url: str,
    amqp_vhost: str,
    use_broker: Callable[..., object],
    worker_factory: Callable[..., WorkerProcess],
    execution_log: ExecutionLog,
) -> None:
    from tests.taskapp import fault_tasks

    use_broker(amqp_url)
    queue = unique_queue()
    worker = worker_factory(
        "--pool", "threads", "-c", "2", "-Q", queue, broker_url=amqp_url, env=execution_log.env
    )
    result = fault_tasks.run.apply_async(("long", 5.0), queue=queue)
    wait_for(lambda: execution_log.counts()["long"] == 1, what="the task to start")
    assert worker.process is not None
    assert close_amqp_connections(worker.process.pid, amqp_vhost) >= 1
    worker.wait_for_output("reconnected to the broker", timeout_s=30)

    assert result.get(timeout=30) == "long"
    wait_for(
        lambda: (
            execution_log.counts()["long"] > 1
            or "acknowledged without a second run" in worker.output
        ),
        timeout_s=30,
        what="the redelivery to be settled",
    )
    assert execution_log.counts() == {"long": 1}
