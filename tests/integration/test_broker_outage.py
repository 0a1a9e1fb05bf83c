"""A worker whose broker goes away reconnects and carries on."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from djworker.broker import Broker
from tests.integration.harness import WorkerProcess, unique_queue, wait_for
from tests.taskapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of this test's own, so it can be stopped without disturbing others."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_for(self._answers, timeout_s=10, what="the private redis-server")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed here")
    server = PrivateRedis()
    server.start()
    yield server
    server.kill()


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

    private_redis.kill()
    worker.wait_for_output("lost the broker connection", timeout_s=20)
    time.sleep(1.5)
    private_redis.start()
    worker.wait_for_output("reconnected to the broker", timeout_s=30)

    broker.close()  # the publisher's old connection died with the server too
    assert tasks.add.apply_async((2, 3), queue=queue).get(timeout=20) == 5
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
