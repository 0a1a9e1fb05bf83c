"""A worker that holds received messages while its slots idle says so, naming them.

In process, on ``memory://``, with pools that misbehave on purpose (one that never wakes a slot
for a queued job, one that loses a job) and a clock the test moves.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from djworker import conf, message
from djworker.broker import Broker
from djworker.concurrency.base import BasePool
from djworker.consumer import Consumer
from djworker.execution import TaskExecutor
from djworker.job import Job
from djworker.stalls import CHECK_EVERY_S, WARN_AFTER_S, StallWatch
from tests.taskapp import tasks


class SleepingPool(BasePool):
    """Keeps every job queued and never starts one: a lost wake-up."""

    alias = "sleeping"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.jobs: list[Job] = []
        self.busy_slots = 0

    def start(self) -> None:
        return None

    def stop(self, *, graceful: bool, timeout_s: float | None = None) -> list[Job]:
        return []

    def apply_async(self, job: Job) -> None:
        self.jobs.append(job)

    def queued(self) -> list[Job]:
        return list(self.jobs)

    @property
    def size(self) -> int:
        return self.initial_size

    @property
    def busy(self) -> int:
        return self.busy_slots


class LosingPool(SleepingPool):
    """Accepts jobs, then neither queues nor runs them."""

    def queued(self) -> list[Job]:
        return []


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_consumer(pool_class: type[SleepingPool]) -> Consumer:
    queue = f"stall-{uuid.uuid4().hex[:8]}"
    config = conf.load_config(environ={}, djworker_settings={}, cli={"queues": [queue]})
    made = Consumer(broker=Broker(url="memory://"), settings=config, pool=None)  # type: ignore[arg-type]
    made.pool = pool_class(size=2, on_outcome=made.outcomes.put, executor=TaskExecutor())
    return made


@pytest.fixture(params=[SleepingPool, LosingPool])
def consumer(request: pytest.FixtureRequest) -> Iterator[Consumer]:
    made = make_consumer(request.param)
    assert made.connect()
    yield made
    made.close()


def receive(consumer: Consumer, *task_ids: str) -> Clock:
    for task_id in task_ids:
        consumer.broker.publish(
            message.build(
                task_id=task_id,
                task_name=tasks.noop.name,
                args=[],
                kwargs={},
                queue=consumer.queues[0],
                priority=0,
            )
        )
    clock = Clock()
    consumer.stalls = StallWatch(consumer, clock=clock)
    for _ in range(200):
        if len(consumer._deliveries) == len(task_ids):
            break
        consumer.loop_once()
    assert len(consumer._deliveries) == len(task_ids)
    return clock


def look(consumer: Consumer, clock: Clock, after_s: float) -> None:
    end = clock.now + after_s
    while clock.now < end:
        clock.now += CHECK_EVERY_S
        consumer.stalls.check()


def test_messages_waiting_while_slots_are_free_are_named_after_a_few_seconds(
    consumer: Consumer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = receive(consumer, "stuck-a", "stuck-b")
    with caplog.at_level(logging.WARNING, logger="djworker.stalls"):
        look(consumer, clock, WARN_AFTER_S / 2)
        assert not caplog.records
        look(consumer, clock, WARN_AFTER_S)
    [record] = caplog.records
    text = record.getMessage()
    assert "stuck-a" in text and "stuck-b" in text
    assert "while slots are free" in text
    where = "in the pool's queue" if consumer.pool.queued() else "neither queued nor reported"
    assert where in text


def test_the_same_stall_is_reported_once(
    consumer: Consumer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = receive(consumer, "stuck-once")
    with caplog.at_level(logging.WARNING, logger="djworker.stalls"):
        look(consumer, clock, WARN_AFTER_S * 4)
    assert len(caplog.records) == 1


def test_nothing_is_reported_while_every_slot_is_busy(
    consumer: Consumer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = receive(consumer, "waits-its-turn")
    consumer.pool.busy_slots = 2  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="djworker.stalls"):
        look(consumer, clock, WARN_AFTER_S * 2)
    assert not caplog.records
