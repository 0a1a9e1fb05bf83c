"""Redis: an outage reruns only the tasks running at the fault; a long task runs once.

Both on a private redis-server. kombu's scan for messages past their visibility timeout runs on
every poll here (``unacked_restore_throttle=1``) and the timeout is a few seconds, so what a
worker did not settle comes back within the test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
import redis

from tests.faults.conftest import ExecutionLog
from tests.faults.servers import PrivateRedis
from tests.integration.harness import WorkerProcess, unique_queue, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def options(visibility_timeout_s: float) -> dict[str, object]:
    return {
        "visibility_timeout": visibility_timeout_s,
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": 2,
    }


def worker_env(log: ExecutionLog, transport_options: dict[str, object]) -> dict[str, str]:
    return {**log.env, "DJWORKER_BROKER_TRANSPORT_OPTIONS": json.dumps(transport_options)}


def settled(url: str, queue: str) -> bool:
    """Nothing left in the queue's lists nor in ``unacked``: no run can still come."""
    client = redis.Redis.from_url(url)
    try:
        waiting = sum(client.llen(key) for key in client.scan_iter(f"{queue}*"))
        return waiting == 0 and client.hlen("unacked") == 0
    finally:
        client.close()


@pytest.mark.parametrize(("pool", "concurrency"), [("threads", 4), ("gevent", 10)])
def test_a_redis_crash_reruns_only_the_tasks_running_at_the_fault(
    pool: str,
    concurrency: int,
    persistent_redis: PrivateRedis,
    use_broker: Callable[..., object],
    worker_factory: Callable[..., WorkerProcess],
    execution_log: ExecutionLog,
) -> None:
    from tests.taskapp import fault_tasks

    transport_options = options(4)
    broker = use_broker(persistent_redis.url, transport_options)
    queue = unique_queue()
    keys = [f"k{i}" for i in range(6 * concurrency)]
    for key in keys:
        fault_tasks.run.apply_async((key, 2.0), queue=queue)
    worker = worker_factory(
        "--pool",
        pool,
        "-c",
        str(concurrency),
        "-Q",
        queue,
        broker_url=persistent_redis.url,
        env=worker_env(execution_log, transport_options),
    )
    # A slotful runs, three times as many are reserved (prefetch 4 per slot); none has
    # finished yet.
    wait_for(lambda: len(execution_log.runs()) == concurrency, what="the first runs to start")
    time.sleep(0.5)
    persistent_redis.crash()
    worker.wait_for_output("lost the broker connection", timeout_s=30)
    time.sleep(1)
    persistent_redis.start()
    worker.wait_for_output("reconnected to the broker", timeout_s=60)
    broker.close()  # type: ignore[attr-defined]  # its connection died with the server

    wait_for(
        lambda: not execution_log.lost(keys) and settled(persistent_redis.url, queue),
        timeout_s=120,
        interval_s=0.5,
        what=f"every task to run and settle; ran {execution_log.counts()}",
    )
    extra_runs = sum(n - 1 for n in execution_log.duplicated().values())
    assert extra_runs <= concurrency, (execution_log.duplicated(), str(worker.log_path))
    assert "dropped" in worker.output


def test_a_task_longer_than_the_visibility_timeout_runs_once_on_redis(
    private_redis: PrivateRedis,
    use_broker: Callable[..., object],
    worker_factory: Callable[..., WorkerProcess],
    execution_log: ExecutionLog,
) -> None:
    from tests.taskapp import fault_tasks

    transport_options = options(2)
    use_broker(private_redis.url, transport_options)
    queue = unique_queue()
    # Two workers: a message whose visibility ran out would be taken by the idle one.
    for _ in range(2):
        worker_factory(
            "--pool",
            "threads",
            "-c",
            "1",
            "-Q",
            queue,
            broker_url=private_redis.url,
            env=worker_env(execution_log, transport_options),
        )
    result = fault_tasks.run.apply_async(("long", 8.0), queue=queue)
    assert result.get(timeout=60) == "long"
    wait_for(lambda: settled(private_redis.url, queue), what="the message to be acked")
    assert execution_log.counts() == {"long": 1}
