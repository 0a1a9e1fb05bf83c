"""What a consumer does with received messages when its broker connection is lost.

In process, on kombu's ``memory://`` transport and a real threads pool whose runner blocks until
the test lets it finish, so the test decides exactly which jobs are running at the fault.
``memory://`` keeps no unacknowledged messages, so the test publishes them again itself, as a
real broker does once their connection is gone.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from django.utils import timezone
from kombu.message import Message

from djworker import conf, message
from djworker.broker import Broker
from djworker.concurrency.threads import ThreadPool
from djworker.consumer import Consumer
from djworker.execution import TaskExecutor
from djworker.job import Job, Outcome, OutcomeKind
from tests.taskapp import tasks


class Runs:
    """A runner that records each start and holds the first run until ``release``."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.lock = threading.Lock()
        self.gate = threading.Event()

    def __call__(self, job: Job, guard: object) -> Outcome:
        with self.lock:
            first = not self.started
            self.started.append(job.task_id)
        if first:
            assert self.gate.wait(10), "the test never released the first run"
        return Outcome(job.token, job.task_id, OutcomeKind.SUCCEEDED)

    def release(self) -> None:
        self.gate.set()


@pytest.fixture
def runs() -> Runs:
    return Runs()


@pytest.fixture
def consumer(runs: Runs) -> Iterator[Consumer]:
    queue = f"loss-{uuid.uuid4().hex[:8]}"
    config = conf.load_config(
        environ={}, djworker_settings={}, cli={"queues": [queue], "concurrency": 1}
    )
    broker = Broker(url="memory://")
    made = Consumer(broker=broker, settings=config, pool=None)  # type: ignore[arg-type]
    pool = ThreadPool(size=1, on_outcome=made.outcomes.put, executor=TaskExecutor(run_task=runs))
    made.pool = pool
    pool.start()
    assert made.connect()
    yield made
    runs.release()
    pool.stop(graceful=True, timeout_s=5)
    made.close()
    broker.close()


def publish(consumer: Consumer, task_id: str, *, eta_s: float | None = None) -> None:
    eta = timezone.now() + timedelta(seconds=eta_s) if eta_s else None
    consumer.broker.publish(
        message.build(
            task_id=task_id,
            task_name=tasks.noop.name,
            args=[],
            kwargs={},
            queue=consumer.queues[0],
            priority=0,
            eta=eta,
        )
    )


def loop_until(consumer: Consumer, condition: Callable[[], bool], what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        consumer.loop_once()
    raise AssertionError(f"the consumer never got to: {what}")


def test_messages_not_started_when_the_connection_is_lost_never_start(
    consumer: Consumer, runs: Runs
) -> None:
    for task_id in ("running", "queued-1", "queued-2"):
        publish(consumer, task_id)
    publish(consumer, "later", eta_s=3600)
    loop_until(
        consumer,
        lambda: len(consumer._deliveries) == 4 and runs.started == ["running"],
        "four messages received, the first running",
    )

    assert consumer.reconnect()
    for task_id in ("running", "queued-1", "queued-2"):
        publish(consumer, task_id)
    publish(consumer, "later", eta_s=3600)
    runs.release()
    # Delivered again on the new connection, each runs once; "running" was already done.
    loop_until(consumer, lambda: len(runs.started) >= 3 and consumer.in_flight == 0, "idle")
    assert sorted(runs.started) == ["queued-1", "queued-2", "running"]


def test_a_redelivery_of_a_call_still_running_here_waits_and_is_acked_without_a_second_run(
    consumer: Consumer, runs: Runs
) -> None:
    publish(consumer, "long")
    loop_until(consumer, lambda: runs.started == ["long"], "the first run started")

    # The connection is replaced while the task runs: the broker hands its message back, and
    # it arrives again on the new connection while the first run has not finished.
    assert consumer.reconnect()
    publish(consumer, "long")
    loop_until(consumer, lambda: len(consumer._deliveries) == 2, "the redelivery received")
    assert runs.started == ["long"]

    runs.release()
    loop_until(consumer, lambda: not consumer._deliveries, "both settled")
    assert runs.started == ["long"]


def test_an_outcome_on_a_lost_connection_is_not_acknowledged_and_does_not_fail(
    consumer: Consumer, runs: Runs
) -> None:
    publish(consumer, "running")
    loop_until(consumer, lambda: runs.started == ["running"], "the run started")
    consumer.connection_lost()
    runs.release()
    loop_until(consumer, lambda: consumer.processed == 1, "the outcome settled")
    assert not consumer._deliveries


def test_redeliveries_waiting_on_a_run_whose_ack_fails_are_dropped_with_the_connection(
    consumer: Consumer, runs: Runs, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three deliveries of one call on one connection (its visibility timeout ran out twice).
    for _ in range(3):
        publish(consumer, "long")
    loop_until(
        consumer,
        lambda: len(consumer._deliveries) == 3 and runs.started == ["long"],
        "the run started and the redeliveries parked",
    )

    def dead_channel(self: Message) -> None:
        raise ConnectionError("the broker went away")

    monkeypatch.setattr(Message, "ack", dead_channel)
    runs.release()
    with pytest.raises(ConnectionError):
        loop_until(consumer, lambda: False, "the failing ack")
    consumer.connection_lost()
    # Nothing is left waiting for an answer that can never come.
    assert not consumer._deliveries
    assert runs.started == ["long"]
