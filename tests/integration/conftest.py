from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.integration.harness import WorkerProcess

pytestmark = pytest.mark.integration


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


@pytest.fixture(params=["django", "redis", "amqp"])
def every_broker(request: pytest.FixtureRequest, use_broker: Callable[..., object]) -> str:
    """The test runs on each broker; the test process publishes through it."""
    if request.param == "django":
        url = "django://"
    else:
        url = request.getfixturevalue(f"{request.param}_url")
    use_broker(url)
    return url
