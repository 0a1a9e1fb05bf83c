"""A cold stop on redis hands its messages back at once, not after the visibility timeout.

kombu's redis channel restores every unacknowledged message of a connection it closes, so the
second signal's close puts the running task and the reserved ones back in their queue. Only a
worker that never closes its connection (SIGKILL, a crash) leaves them to the visibility timeout.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from tests.faults.conftest import ExecutionLog
from tests.integration.harness import WorkerProcess, unique_queue, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_cold_stop_on_redis_hands_running_and_reserved_messages_back_at_once(
    redis_url: str,
    use_broker: Callable[..., object],
    worker_factory: Callable[..., WorkerProcess],
    execution_log: ExecutionLog,
) -> None:
    from tests.taskapp import fault_tasks

    use_broker(redis_url, {"visibility_timeout": 3600})
    queue = unique_queue()
    first = worker_factory(
        "--pool", "threads", "-c", "1", "-Q", queue, broker_url=redis_url, env=execution_log.env
    )
    for key in ("running", "reserved-1", "reserved-2"):
        fault_tasks.run.apply_async((key, 60.0 if key == "running" else 0.0), queue=queue)
    wait_for(lambda: execution_log.counts()["running"] == 1, what="the first task to start")
    first.signal(signal.SIGTERM)
    first.wait_for_output("warm shutdown")
    first.signal(signal.SIGTERM)
    assert first.wait() == 1

    # Three slots, so the running task, started again, does not hold up the other two.
    worker_factory(
        "--pool", "threads", "-c", "3", "-Q", queue, broker_url=redis_url, env=execution_log.env
    )
    # Far sooner than the hour-long visibility timeout: the close gave every message back.
    wait_for(
        lambda: execution_log.counts() == {"running": 2, "reserved-1": 1, "reserved-2": 1},
        what=f"every message to run on the next worker; ran {execution_log.counts()}",
    )
