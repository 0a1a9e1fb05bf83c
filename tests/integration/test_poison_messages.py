"""Messages whose fields the result table cannot hold are refused once; the worker carries on."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from kombu import Connection, Producer

from djworker.broker import Broker
from djworker.models import TaskResult
from tests.integration.harness import WorkerProcess, unique_queue
from tests.taskapp import tasks
from tests.taskapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_overlong_id_or_task_name_is_refused_once_and_the_worker_carries_on(
    worker_factory: Callable[..., WorkerProcess],
    redis_url: str,
    use_broker: Callable[..., Broker],
) -> None:
    broker = use_broker(redis_url)
    queue = unique_queue()
    worker = worker_factory("--pool", "solo", "-Q", queue, broker_url=redis_url)
    base = {"v": 1, "args": [1, 2], "kwargs": {}, "queue": queue, "priority": 0, "attempt": 0}
    with Connection(redis_url) as conn:
        producer = Producer(conn)
        producer.maybe_declare(broker.queue(queue))
        for body in (
            {**base, "id": "i" * 65, "task": tasks.add.name},
            {**base, "id": "long-name-1", "task": "x" * 300},
        ):
            producer.publish(body, routing_key=queue, serializer="json")
    good = tasks.add.apply_async((2, 3), queue=queue)
    assert good.get(timeout=20) == 5
    time.sleep(1)  # a message given back instead of refused would show up again meanwhile
    out = worker.output
    assert worker.process is not None and worker.process.poll() is None, out
    assert out.count("'id' is 65 characters long; at most 64") == 1, out
    assert out.count("'task' is 300 characters long; at most 255") == 1, out
    row = TaskResult.objects.get(id="long-name-1")
    assert (row.status, row.exception_class, row.task_name) == (
        "FAILED",
        "InvalidMessage",
        "x" * 255,
    )


def test_a_run_whose_failure_cannot_be_stored_is_recorded_without_its_arguments_and_not_rerun(
    worker_factory: Callable[..., WorkerProcess],
    redis_url: str,
    use_broker: Callable[..., Broker],
) -> None:
    # PostgreSQL's text cannot hold a NUL character: storing this run's error message fails.
    use_broker(redis_url)
    queue = unique_queue()
    worker = worker_factory("--pool", "threads", "-c", "1", "-Q", queue, broker_url=redis_url)
    poisoned = tasks.note_then_fail.apply_async(("a",), queue=queue)
    good = tasks.add.apply_async((1, 1), queue=queue)
    assert good.get(timeout=20) == 2
    time.sleep(1.5)  # a message given back would have run again meanwhile
    assert Note.objects.filter(text="note_then_fail").count() == 1
    row = TaskResult.objects.get(id=poisoned.id)
    assert row.status == "FAILED" and row.args == []
    assert "could not record this run" in row.exception_message
    assert "not run again" in worker.output
