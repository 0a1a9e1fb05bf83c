"""Four producer processes publish while two workers consume on ``django://``: nothing is lost,
nothing runs twice, and no message is left behind.

No fault is injected: this is the baseline every fault case is measured against, on whatever
database the test run uses (PostgreSQL by default; SQLite with ``DATABASE_URL=sqlite:///...``
and ``DJWORKER_SQLITE_TEST_NAME``). Each producer publishes ``DJWORKER_FAULT_TASKS_PER_PRODUCER``
tasks, 1,000 by default so the suite fits CI; 5,000 is the full size (20,000 tasks).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import pytest

from tests.faults.conftest import ExecutionLog
from tests.faults.producer import ProducerProcess
from tests.integration.harness import WorkerProcess, unique_queue, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PRODUCERS = 4
PER_PRODUCER = int(os.environ.get("DJWORKER_FAULT_TASKS_PER_PRODUCER", "1000"))


# The full size takes minutes on a loaded 2-core machine: more than the suite's 300 s default.
@pytest.mark.timeout(max(300, PER_PRODUCER * PRODUCERS // 20))
def test_four_producers_and_two_workers_lose_and_duplicate_nothing(
    worker_factory: Callable[..., WorkerProcess],
    producer_factory: Callable[..., ProducerProcess],
    execution_log: ExecutionLog,
) -> None:
    from djworker.models.broker import QueueMessage

    queue = unique_queue()
    workers = [
        worker_factory("-c", "4", "-Q", queue, "--hostname", f"w{n}", env=execution_log.env)
        for n in range(2)
    ]
    producers = [producer_factory(queue, f"p{n}-", PER_PRODUCER) for n in range(PRODUCERS)]
    keys = [key for producer in producers for key in producer.keys]
    published = sum(producer.finish() for producer in producers)
    assert published == len(keys)
    wait_for(
        lambda: not execution_log.lost(keys),
        timeout_s=60 + len(keys) * 0.05,
        interval_s=1.0,
        what=f"all {len(keys)} tasks to run",
    )
    # Settled messages are deleted in batches; none may stay behind to run again later.
    wait_for(
        lambda: not QueueMessage.objects.filter(queue=queue).exists(),
        timeout_s=30,
        what="every message of the queue to be acknowledged",
    )
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(timeout_s=60) == 0, worker.output
    assert execution_log.lost(keys) == []
    assert execution_log.duplicated() == {}
    assert len(execution_log.runs()) == len(keys)
