"""A worker whose broker goes away reconnects and carries on."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from djworker.broker import Broker
from tests.faults.servers import PrivateRedis
from tests.integration.harness import WorkerProcess, unique_queue
from tests.taskapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own, so it can be stopped without disturbing others."""
    server = PrivateRedis(tmp_path / "redis").start()
    yield server
    server.crash()


def test_a_worker_reconnects_after_its_redis_restarts_and_runs_new_tasks(
    worker_factory: Callable[..., WorkerProcess],
    private_redis: PrivateRedis,
    use_broker: Callable[..., Broker],
) -> None:
    broker = use_broker(private_redis.url)
    queue = unique_queue()
    worker = worker_factory(
        "--pool", "threads", "-c", "2", "-Q", queue, broker_url=private_redis.url
    )
    assert tasks.add.apply_async((1, 2), queue=queue).get(timeout=20) == 3

    private_redis.crash()
    worker.wait_for_output("lost the broker connection", timeout_s=20)
    time.sleep(1.5)
    private_redis.start()
    worker.wait_for_output("reconnected to the broker", timeout_s=30)

    broker.close()  # the publisher's old connection died with the server too
    assert tasks.add.apply_async((2, 3), queue=queue).get(timeout=20) == 5
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
