"""A task that kills its own process is failed after its delivery cap, on every broker.

``faults.kill_own_process`` rejects on worker loss, so without a cap the broker hands it back
for ever: on prefork a new child dies each time; on the solo and threads pools the whole worker
dies, and a supervisor (here, the test) starts it again. With ``max_deliveries=3`` it must run
at most three times, end FAILED with the reason, leave the broker, and the good task published
behind it must run exactly once.

The killer is published at priority 9 and the good task at 0, and each worker holds one
message at a time, so the killer always comes first when both are ready: a good task that ran
just before a worker died could otherwise lose its batched ack and run twice, which
at-least-once delivery allows but this test is not about.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable

import pytest

from djworker.broker import Broker
from djworker.models import QueueMessage, TaskResult
from tests.faults.conftest import ExecutionLog
from tests.integration.harness import WorkerProcess, unique_queue, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CAP = 3
#: a dead worker's redis and django:// messages come back after this; kombu's redis scan for
#: them runs on every poll instead of every tenth
QUICK_REDELIVERY = {
    "visibility_timeout": 2,
    "unacked_restore_throttle": 1,
    "unacked_mutex_expire": 2,
}


@pytest.fixture(params=["django", "redis", "amqp"])
def broker_url(request: pytest.FixtureRequest) -> str:
    if request.param == "django":
        return "django://"
    return str(request.getfixturevalue(f"{request.param}_url"))


def publish_killer_then_good_task(queue: str, *, quietly: bool = False) -> tuple[str, str]:
    from tests.taskapp import fault_tasks

    task = fault_tasks.kill_own_process_quietly if quietly else fault_tasks.kill_own_process
    killer = task.apply_async(("killer",), queue=queue, priority=9)
    good = fault_tasks.run.apply_async(("good",), queue=queue, priority=0)
    return killer.id, good.id


def worker_env(
    log: ExecutionLog, transport_options: dict[str, object] | None = None
) -> dict[str, str]:
    env = {**log.env, "DJWORKER_MAX_DELIVERIES": str(CAP)}
    if transport_options:
        env["DJWORKER_BROKER_TRANSPORT_OPTIONS"] = json.dumps(transport_options)
    return env


def failed(task_id: str) -> bool:
    return TaskResult.objects.filter(id=task_id, status="FAILED").exists()


def messages_left(broker: Broker, queue: str, task_id: str) -> int:
    """Messages of ``queue`` still at the broker, ready or held, once no worker consumes it."""
    if broker.url.startswith("django"):
        return QueueMessage.objects.filter(queue=queue).count()
    with broker.connection() as connection:
        channel = connection.default_channel
        if broker.url.startswith("redis"):
            # An emptied queue's lists are gone, which a passive declare reports as no queue.
            # A dead worker's message waits in the unacked hash until a consumer restores it.
            with channel.conn_or_acquire() as client:
                held = [v for v in client.hvals(channel.unacked_key) if task_id.encode() in v]
            return int(channel._size(queue)) + len(held)
        _, ready, _ = broker.queue(queue).bind(channel).queue_declare(passive=True)
        return int(ready)


def assert_failed_for_its_cap_and_gone(
    broker: Broker, queue: str, killer: str, log: ExecutionLog, last: WorkerProcess
) -> None:
    row = TaskResult.objects.get(id=killer)
    assert (row.status, row.exception_class) == ("FAILED", "DeliveryLimitExceeded")
    assert f"max_deliveries={CAP} (worker max_deliveries, from env)" in row.exception_message
    wait_for(lambda: log.counts()["good"] >= 1, what="the good task behind it to run")
    last.signal(signal.SIGTERM)
    assert last.wait() == 0, last.output
    assert "state=FAILED" in last.output and "message rejected" in last.output
    assert log.counts() == {"killer": CAP, "good": 1}
    assert messages_left(broker, queue, killer) == 0


def test_a_self_killing_task_on_prefork_runs_at_most_its_cap_then_fails_and_leaves_the_broker(
    broker_url: str,
    use_broker: Callable[..., Broker],
    worker_factory: Callable[..., WorkerProcess],
    execution_log: ExecutionLog,
) -> None:
    broker = use_broker(broker_url)
    queue = unique_queue()
    killer, _ = publish_killer_then_good_task(queue)
    worker = worker_factory(
        *("--pool", "prefork", "-c", "1", "--prefetch-multiplier", "1", "-Q", queue),
        broker_url=broker_url,
        env=worker_env(execution_log),
    )
    wait_for(lambda: failed(killer), timeout_s=60, what="the self-killing task to be FAILED")
    assert_failed_for_its_cap_and_gone(broker, queue, killer, execution_log, worker)


@pytest.mark.parametrize(
    ("pool", "broker_url"),
    [("solo", "django"), ("threads", "redis"), ("threads", "amqp")],
    indirect=["broker_url"],
)
def test_a_task_that_kills_its_worker_is_failed_by_a_later_start_after_its_cap(
    pool: str,
    broker_url: str,
    use_broker: Callable[..., Broker],
    worker_factory: Callable[..., WorkerProcess],
    execution_log: ExecutionLog,
) -> None:
    broker = use_broker(broker_url)
    queue = unique_queue()
    killer, _ = publish_killer_then_good_task(queue)
    env = worker_env(execution_log, QUICK_REDELIVERY)
    starts = 0
    # Start the worker again each time the task kills it, as a supervisor would.
    while not failed(killer):
        assert starts <= CAP, (
            f"still not FAILED after {starts} starts; ran {execution_log.counts()}"
        )
        worker = worker_factory(
            *("--pool", pool, "-c", "1", "--prefetch-multiplier", "1", "-Q", queue),
            broker_url=broker_url,
            env=env,
            wait_ready=False,
        )
        starts += 1
        process = worker.process
        assert process is not None
        wait_for(
            lambda process=process: process.poll() is not None or failed(killer),
            timeout_s=60,
            what="the worker to die or the task to be FAILED",
        )
    assert starts == CAP + 1  # CAP starts died running it; the next one failed it
    assert worker.process.poll() is None, worker.output
    assert_failed_for_its_cap_and_gone(broker, queue, killer, execution_log, worker)


def test_a_self_killing_task_without_a_result_row_is_counted_from_its_first_redelivery(
    broker_url: str,
    use_broker: Callable[..., Broker],
    worker_factory: Callable[..., WorkerProcess],
    execution_log: ExecutionLog,
) -> None:
    broker = use_broker(broker_url)
    queue = unique_queue()
    killer, _ = publish_killer_then_good_task(queue, quietly=True)
    assert not TaskResult.objects.filter(id=killer).exists()  # ignore_result: no row published
    worker = worker_factory(
        *("--pool", "prefork", "-c", "1", "--prefetch-multiplier", "1", "-Q", queue),
        broker_url=broker_url,
        env=worker_env(execution_log),
    )
    wait_for(lambda: failed(killer), timeout_s=60, what="the self-killing task to be FAILED")
    # The broker's redelivered flag made the second delivery write a row that starts at 2.
    assert TaskResult.objects.get(id=killer).deliveries == CAP
    assert_failed_for_its_cap_and_gone(broker, queue, killer, execution_log, worker)
