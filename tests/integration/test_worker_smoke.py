from __future__ import annotations

import signal

import pytest

from djworker.models import TaskResult
from tests.integration.harness import unique_queue
from tests.taskapp import tasks


@pytest.mark.django_db(transaction=True)
def test_a_threads_worker_on_redis_runs_tasks_and_stops_warm_on_sigterm(
    worker_factory, redis_url, use_broker
):
    use_broker(redis_url)
    queue = unique_queue()
    worker = worker_factory("--pool", "threads", "-c", "2", "-Q", queue, broker_url=redis_url)
    results = [tasks.add.apply_async((i, 1), queue=queue) for i in range(20)]
    assert [r.get(timeout=20) for r in results] == [i + 1 for i in range(20)]
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert TaskResult.objects.filter(status="SUCCESSFUL").count() == 20
