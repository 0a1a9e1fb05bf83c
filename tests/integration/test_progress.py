"""Progress: reported by a running task, read through AsyncResult, shown in the admin."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import djworker
from djworker.models import TaskResult
from tests.integration.harness import WorkerProcess, unique_queue, wait_for
from tests.integration.test_admin_powers import staff
from tests.taskapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_running_task_reports_progress_that_async_result_and_the_admin_show(
    every_broker, worker_factory: Callable[..., WorkerProcess]
) -> None:
    queue = unique_queue()
    worker_factory("--pool", "threads", "-c", "1", "-Q", queue, broker_url=every_broker)
    result = tasks.count_with_progress.apply_async((40, 0.1), queue=queue)
    seen = wait_for(
        lambda: result.status == "RUNNING" and result.progress, what="progress to be reported"
    )
    assert seen.total == 40 and 0 < seen.done <= 40
    assert seen.note == f"step {seen.done}"
    assert seen.fraction == seen.done / 40
    page = staff("view_taskresult").get("/admin/djworker/taskresult/").content.decode()
    assert '<progress value="' in page and 'max="40"' in page
    assert result.get(timeout=30) == 40


def test_a_task_shorter_than_the_write_interval_writes_no_progress(
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    queue = unique_queue()
    worker_factory("--pool", "solo", "-Q", queue)
    result = tasks.noop_reporting_progress.apply_async((10_000,), queue=queue)
    assert result.get(timeout=30) is None
    assert result.progress is None
    assert TaskResult.objects.get(id=result.id).progress_at is None


def test_progress_outside_a_task_does_nothing() -> None:
    djworker.progress(1, 2, "not in a task")
