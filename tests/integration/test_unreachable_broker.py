"""A worker whose broker cannot be reached still obeys a stop signal."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from tests.integration.harness import WorkerProcess

pytestmark = pytest.mark.django_db(transaction=True)

#: nothing listens on port 1, so every connection attempt is refused at once
UNREACHABLE = "redis://127.0.0.1:1/0"


def test_sigterm_stops_a_worker_still_waiting_for_its_broker(
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    worker = worker_factory(
        "--pool", "threads", "-c", "1", broker_url=UNREACHABLE, wait_ready=False
    )
    worker.wait_for_output("broker unreachable", timeout_s=30)
    worker.signal(signal.SIGTERM)
    assert worker.wait(15) == 0, worker.output
    assert "stop requested before the broker could be reached" in worker.output
