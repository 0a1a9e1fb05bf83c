"""Delivery guarantees of a real worker: shutdown by signal, crashes, bad messages, retries."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
from django.db import transaction
from kombu import Producer

from djworker.broker import Broker
from djworker.broker_schemes import BrokerConnection
from djworker.conf import DEFAULT_QUEUE
from djworker.models import TaskResult
from tests.integration.harness import (
    QUICK_REDELIVERY,
    QUICK_REDELIVERY_ENV,
    WorkerProcess,
    purge_queue,
    unique_queue,
    wait_for,
)
from tests.taskapp import tasks
from tests.taskapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["django", "redis", "amqp"])
def broker(request: pytest.FixtureRequest, use_broker: Callable[..., Broker]) -> str:
    """Every delivery test runs on each broker; each side gets a short visibility timeout.

    Tests publish to unique queues, except the one that needs the default queue: that one is
    emptied first, so a message left there by an earlier run cannot fail it.
    """
    if request.param == "django":
        url = "django://"
    else:
        url = request.getfixturevalue(f"{request.param}_url")
    made = use_broker(url, QUICK_REDELIVERY)
    purge_queue(made, DEFAULT_QUEUE)
    return url


def start_worker(factory: Callable[..., WorkerProcess], url: str, *args: str) -> WorkerProcess:
    return factory(
        *args,
        broker_url=url,
        env=QUICK_REDELIVERY_ENV,
    )


def test_first_sigterm_lets_the_running_task_finish_acks_it_and_exits_0(
    worker_factory, broker
) -> None:
    queue = unique_queue()
    worker = start_worker(worker_factory, broker, "--pool", "threads", "-c", "1", "-Q", queue)
    result = tasks.sleep.apply_async((1.5,), {"note": "finished"}, queue=queue)
    wait_for(lambda: result.status == "RUNNING", what="the task to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert result.status == "SUCCESSFUL"
    assert "warm shutdown" in worker.output
    # Acknowledged: a new worker on the queue gets nothing to run again.
    second = start_worker(worker_factory, broker, "--pool", "solo", "-Q", queue)
    time.sleep(1.0)
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
    assert Note.objects.filter(text="finished").count() == 1


def test_warm_shutdown_hands_unstarted_messages_back(worker_factory, broker) -> None:
    queue = unique_queue()
    worker = start_worker(worker_factory, broker, "--pool", "threads", "-c", "1", "-Q", queue)
    first = tasks.sleep.apply_async((1.0,), queue=queue)
    waiting = [tasks.add.apply_async((i, i), queue=queue) for i in range(3)]
    wait_for(lambda: first.status == "RUNNING", what="the first task to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert first.status == "SUCCESSFUL"
    start_worker(worker_factory, broker, "--pool", "threads", "-c", "2", "-Q", queue)
    assert [r.get(timeout=20) for r in waiting] == [0, 2, 4]


def test_second_sigterm_stops_at_once_and_the_task_is_delivered_again(
    worker_factory, broker
) -> None:
    queue = unique_queue()
    worker = start_worker(worker_factory, broker, "--pool", "threads", "-c", "1", "-Q", queue)
    tasks.sleep_then_note_once.apply_async((30, "cold"), queue=queue)
    # The task's first note, not its RUNNING row (see the SIGKILL test below).
    wait_for(lambda: Note.objects.filter(text="cold").exists(), what="the task to start")
    worker.signal(signal.SIGTERM)
    worker.wait_for_output("warm shutdown")
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 1
    assert time.monotonic() - started < 5
    assert "cold shutdown" in worker.output
    start_worker(worker_factory, broker, "--pool", "threads", "-c", "1", "-Q", queue)
    wait_for(
        lambda: Note.objects.filter(text="cold").count() == 2, timeout_s=30, what="a second run"
    )


def test_a_worker_killed_mid_task_leaves_the_task_to_the_next_worker(
    worker_factory, broker
) -> None:
    queue = unique_queue()
    worker = start_worker(worker_factory, broker, "--pool", "solo", "-Q", queue)
    result = tasks.sleep_then_note_once.apply_async((30, "killed"), queue=queue)
    # Wait for the task's own first note, not the RUNNING row: RUNNING is written just before
    # the function runs, and a kill in between would leave one note where the test counts two.
    wait_for(lambda: Note.objects.filter(text="killed").exists(), what="the task to start")
    worker.signal(signal.SIGKILL)
    worker.wait()
    replacement = start_worker(worker_factory, broker, "--pool", "threads", "-c", "1", "-Q", queue)
    wait_for(
        lambda: Note.objects.filter(text="killed").count() == 2, timeout_s=30, what="redelivery"
    )
    row = TaskResult.objects.get(id=result.id)
    assert row.status == "RUNNING" and row.attempts >= 2
    replacement.signal(signal.SIGQUIT)  # cold: don't wait 30 s for the sleep


def test_bad_messages_are_rejected_with_a_reason_and_the_worker_carries_on(
    worker_factory, broker, use_broker
) -> None:
    queue = unique_queue()
    worker = start_worker(worker_factory, broker, "--pool", "solo", "-Q", queue)
    base = {"v": 1, "args": [], "kwargs": {}, "queue": queue, "priority": 0, "attempt": 0}
    with BrokerConnection(broker, transport_options={"visibility_timeout": 3}) as conn:
        producer = Producer(conn)
        publish = lambda body, **kw: producer.publish(  # noqa: E731
            body, routing_key=queue, declare=[], serializer=kw.pop("serializer", "json"), **kw
        )
        from djworker.broker import get_broker

        producer.maybe_declare(get_broker().queue(queue))
        publish({**base, "id": "unknown-1", "task": "os.system", "args": ["echo pwned"]})
        publish({**base, "v": 99, "id": "future-1", "task": tasks.add.name})
        publish({**base, "id": "bad-args-1", "task": tasks.add.name, "args": "1,2"})
        publish("not an object at all")
        publish(
            b"\x80\x81binary",
            serializer=None,
            content_type="application/octet-stream",
            content_encoding="binary",
        )
    good = tasks.add.apply_async((2, 3), queue=queue)
    assert good.get(timeout=20) == 5
    out = worker.output
    assert "task 'os.system' is not registered" in out
    assert "message version 99 is not supported" in out
    assert "'args' has the wrong type" in out
    assert "must be a JSON object" in out
    assert "content encoding 'binary' is refused" in out
    failed = dict(
        TaskResult.objects.filter(id__in=["unknown-1", "future-1", "bad-args-1"]).values_list(
            "id", "exception_class"
        )
    )
    assert failed == {
        "unknown-1": "UnknownTask",
        "future-1": "InvalidMessage",
        "bad-args-1": "InvalidMessage",
    }
    time.sleep(4)  # past the 3 s visibility timeout: nothing is delivered again
    assert out.count("is not registered") == worker.output.count("is not registered") == 1


def test_autoretry_retries_with_backoff_until_it_succeeds_each_retry_a_new_message_for_the_cap(
    worker_factory, broker
) -> None:
    queue = unique_queue()
    # One run per message: the retries still run, as each is a new message with its own count.
    start_worker(
        worker_factory, broker, "--pool", "threads", "-c", "2", "-Q", queue, "--max-deliveries", "1"
    )
    result = tasks.fail_twice_then_succeed.apply_async(("retry-key",), queue=queue)
    assert result.get(timeout=30) == "ok"
    row = TaskResult.objects.get(id=result.id)
    assert (row.attempts, row.deliveries) == (3, 1)


def test_autoretry_gives_up_after_max_retries(worker_factory, broker) -> None:
    queue = unique_queue()
    start_worker(worker_factory, broker, "--pool", "threads", "-c", "2", "-Q", queue)
    result = tasks.always_connection_error.apply_async(queue=queue)
    wait_for(lambda: result.status == "FAILED", timeout_s=30, what="the task to fail for good")
    row = TaskResult.objects.get(id=result.id)
    assert (row.attempts, row.exception_class) == (3, "ConnectionError")


def test_a_failing_task_records_its_exception_and_traceback(worker_factory, broker) -> None:
    queue = unique_queue()
    start_worker(worker_factory, broker, "--pool", "solo", "-Q", queue)
    result = tasks.fail.apply_async(("kaput",), queue=queue)
    with pytest.raises(Exception, match="ValueError: kaput"):
        result.get(timeout=20)
    assert "raise ValueError(message)" in result.traceback


def test_countdown_tasks_wait_until_due(worker_factory, broker) -> None:
    queue = unique_queue()
    start_worker(worker_factory, broker, "--pool", "threads", "-c", "1", "-Q", queue)
    result = tasks.add.apply_async((1, 1), queue=queue, countdown=2)
    assert result.get(timeout=20) == 2
    row = TaskResult.objects.get(id=result.id)
    assert (row.started_at - row.enqueued_at).total_seconds() >= 1.9
    # The rest of the row a finished task leaves.
    assert (row.queue, row.args, row.result, row.attempts) == (queue, [1, 1], 2, 1)
    assert row.worker_hostname and row.finished_at >= row.started_at
    assert row.wall_time_s is not None and 0 <= row.wall_time_s < 5
    assert row.cpu_time_s is not None and 0 <= row.cpu_time_s <= row.wall_time_s + 0.05


def test_an_expired_message_is_not_run(worker_factory, broker) -> None:
    queue = unique_queue()
    result = tasks.add.apply_async((1, 1), queue=queue, expires=0.5)
    time.sleep(1)
    start_worker(worker_factory, broker, "--pool", "solo", "-Q", queue)
    wait_for(lambda: result.status == "FAILED", what="the expired task to be refused")
    assert TaskResult.objects.get(id=result.id).exception_class == "TaskExpired"


def test_higher_priority_messages_run_first(worker_factory, broker) -> None:
    queue = unique_queue()
    low = [tasks.add.apply_async((0, i), queue=queue, priority=0) for i in range(3)]
    high = [tasks.add.apply_async((9, i), queue=queue, priority=9) for i in range(3)]
    start_worker(
        worker_factory, broker, "--pool", "solo", "--prefetch-multiplier", "1", "-Q", queue
    )
    for r in low + high:
        r.get(timeout=20)
    order = list(
        TaskResult.objects.filter(id__in=[r.id for r in low + high])
        .order_by("started_at")
        .values_list("priority", flat=True)
    )
    assert order[:3] == [9, 9, 9]


def test_delay_on_commit_publishes_only_after_commit(worker_factory, broker) -> None:
    # delay_on_commit takes only the task's arguments, so it publishes to the default queue.
    start_worker(worker_factory, broker, "--pool", "threads", "-c", "1", "-Q", "default")
    with pytest.raises(RuntimeError), transaction.atomic():
        rolled_back = tasks.write_note.delay_on_commit("rolled back")
        raise RuntimeError("roll back")
    with transaction.atomic():
        committed = tasks.write_note.delay_on_commit("committed")
        assert not TaskResult.objects.filter(id=committed.id).exists()
    assert isinstance(committed.get(timeout=20), int)
    time.sleep(0.5)
    assert not TaskResult.objects.filter(id=rolled_back.id).exists()
    assert not Note.objects.filter(text="rolled back").exists()
