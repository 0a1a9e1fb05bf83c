"""Shared fixtures: real services, skipped locally with a reason when absent, failing in CI."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator

import pytest

from tests.integration.harness import WorkerProcess

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a service is missing locally; in CI a missing service is a failure."""
    if service_up(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if IN_CI:
        pytest.fail(f"{message} (CI starts every service; see .ci/run)")
    pytest.skip(f"{message}; start it to run this test")


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return os.environ.get("DJWORKER_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


@pytest.fixture
def amqp_url() -> str:
    require_service("RabbitMQ", "127.0.0.1", 5672)
    return os.environ.get("DJWORKER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


@pytest.fixture
def use_broker() -> object:
    """Publish from the test process through the given broker URL; restored afterwards."""
    from djworker.broker import Broker, set_broker

    made: list[Broker] = []

    def use(url: str, transport_options: dict[str, object] | None = None) -> Broker:
        broker = Broker(url=url, transport_options=transport_options)
        made.append(broker)
        set_broker(broker)
        return broker

    yield use
    for broker in made:
        broker.close()
    set_broker(None)


@pytest.fixture
def worker_factory() -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker subprocesses; any still running at the end of the test is killed."""
    started: list[WorkerProcess] = []

    def start(*args: str, wait_ready: bool = True, **kwargs: object) -> WorkerProcess:
        worker = WorkerProcess(*args, **kwargs)  # type: ignore[arg-type]
        started.append(worker)
        return worker.start(wait_ready=wait_ready)

    yield start
    for worker in started:
        worker.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without the test database's PostgreSQL locally, skip the tests that need a database.

    Unit tests of pure logic still run. In CI a missing server fails as any other service does.
    """
    from django.conf import settings

    database = settings.DATABASES["default"]
    if "postgresql" not in database["ENGINE"]:
        return
    host, port = database.get("HOST") or "127.0.0.1", int(database.get("PORT") or 5432)
    if IN_CI or service_up(host, port):
        return
    skip = pytest.mark.skip(
        reason=f"PostgreSQL is not reachable at {host}:{port}; start it, or run on SQLite with "
        "DATABASE_URL=sqlite:///djworker.sqlite3"
    )
    for item in items:
        if item.get_closest_marker("django_db"):
            item.add_marker(skip)
