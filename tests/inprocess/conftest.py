"""One worker in the test process: its consumer on ``memory://``, its pool solo or held.

Nothing runs in the background: the test turns the consumer's loop one iteration at a time
(``Rig.loop``), moves the consumer's clock by hand, and decides when a held job ends. So each
test takes milliseconds and says exactly which step it checks.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from djworker import conf, execution
from djworker import consumer as consumer_module
from djworker.broker import set_broker
from djworker.concurrency.base import BasePool
from djworker.consumer import Consumer
from djworker.control import profile_settings
from djworker.worker import Worker
from tests.inprocess import recording
from tests.inprocess.stub_pool import HeldPool

HELD_POOL = f"{HeldPool.__module__}:{HeldPool.__qualname__}"


@dataclass
class Clock:
    """The consumer's clock; it moves only when the test moves it."""

    now: datetime = field(default_factory=timezone.now)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Rig:
    worker: Worker
    queue: str
    clock: Clock

    @property
    def consumer(self) -> Consumer:
        return self.worker.consumer

    @property
    def pool(self) -> BasePool:
        return self.worker.pool

    @property
    def held(self) -> HeldPool:
        assert isinstance(self.worker.pool, HeldPool)
        return self.worker.pool

    def loop(self, times: int = 3) -> None:
        """Turn the consumer's loop; a few turns settle everything that is ready."""
        for _ in range(times):
            self.consumer.loop_once()

    def waiting(self) -> int:
        """Messages in the queue that no consumer has received."""
        assert self.consumer.connection is not None
        channel = self.consumer.connection.default_channel
        return int(channel.queue_declare(queue=self.queue, passive=True).message_count)

    def publish_raw(self, body: Any, **options: Any) -> None:
        """Publish a body as it is, past djworker's own checks (as a foreign producer may)."""
        with self.consumer.broker.connection() as connection:
            connection.Producer().publish(
                body,
                exchange="",
                routing_key=self.queue,
                declare=[self.consumer.broker.queue(self.queue)],
                **options,
            )


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """An iteration of the loop never waits for the broker: the test turns it."""
    monkeypatch.setattr(consumer_module, "IDLE_WAIT_S", 0.0)
    monkeypatch.setattr(consumer_module, "BUSY_WAIT_S", 0.0)


@pytest.fixture(autouse=True)
def keep_the_test_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs keep the connection inside the test's transaction.

    ``execute`` closes connections that are obsolete, as Django does around a request, and
    inside a test transaction every connection looks so; Django's test client likewise stops
    ``close_old_connections`` from running during a test.
    """
    monkeypatch.setattr(execution, "close_old_connections", lambda: None)


@pytest.fixture
def make_rig(db: None) -> Iterator[Callable[..., Rig]]:
    """``make_rig(pool=..., **cli)``: a connected worker on a queue of its own."""
    made: list[Rig] = []
    publisher = recording.RecordingBroker()
    set_broker(publisher)
    recording.LOG.clear()

    def make(pool: str = HELD_POOL, profile: str | None = None, **cli: Any) -> Rig:
        """A worker with these command-line values, following ``profile`` if named."""
        queue = f"inprocess-{uuid.uuid4().hex[:8]}"
        cli = {
            "pool": pool,
            "queues": (queue,),
            "hostname": "inprocess@test",
            "broker_url": "memory://",
            "concurrency": 1,
            "prefetch_multiplier": 1,
            **cli,
        }
        config = conf.load_config(
            environ={},
            djworker_settings={},
            cli=cli,
            admin=profile_settings(profile) if profile else None,
            profile_name=profile or conf.DEFAULT_PROFILE,
        )
        worker = Worker(config)
        clock = Clock()
        worker.broker = worker.consumer.broker = recording.RecordingBroker()
        worker.consumer.clock = clock
        worker.pool.start()
        assert worker.consumer.connect()
        rig = Rig(worker, queue, clock)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.pool.stop(graceful=False)
        rig.consumer.close()
    publisher.close()
    set_broker(None)
