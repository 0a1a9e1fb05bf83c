"""Real green workers: patched before Django, and within their database-connection budget.

Run by ``scripts/test-green`` in the gevent-patched test process (the workers are
subprocesses, so the test process's own patching does not matter to them).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

from djworker.models import TaskResult
from djworker.result import AsyncResult
from tests.integration.harness import ROOT, WorkerProcess, unique_queue, wait_for
from tests.taskapp import green_tasks, tasks

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


class ModuleWorker(WorkerProcess):
    """A worker started as ``python -m djworker runworker ...`` instead of manage.py."""

    def launch(self) -> tuple[list[str], Path, dict[str, str]]:
        return [sys.executable, "-m", "djworker", "runworker", *self.args], ROOT, self.env


PLAIN_MANAGE_PY = """\
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.green.settings")
from django.core.management import execute_from_command_line
execute_from_command_line(sys.argv)
"""


class PlainManageWorker(WorkerProcess):
    """A worker started through a project's usual manage.py, which knows nothing of djworker."""

    def launch(self) -> tuple[list[str], Path, dict[str, str]]:
        script = self.log_path.parent / "manage.py"
        script.write_text(PLAIN_MANAGE_PY)
        command = [sys.executable, str(script), "runworker", *self.args]
        return command, script.parent, {**self.env, "PYTHONPATH": str(ROOT)}


def _launcher(kind: type[WorkerProcess]) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, **kwargs: object) -> WorkerProcess:
        worker = kind(*args, **kwargs)  # type: ignore[arg-type]
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def module_worker() -> Iterator[Callable[..., WorkerProcess]]:
    yield from _launcher(ModuleWorker)


@pytest.fixture
def plain_manage_worker() -> Iterator[Callable[..., WorkerProcess]]:
    yield from _launcher(PlainManageWorker)


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
@pytest.mark.parametrize("launcher", ["manage.py", "python -m djworker", "a plain manage.py"])
def test_a_green_worker_is_patched_before_django_psycopg_and_kombu(
    worker_factory: Callable[..., WorkerProcess],
    module_worker: Callable[..., WorkerProcess],
    plain_manage_worker: Callable[..., WorkerProcess],
    redis_url: str,
    use_broker: Callable[..., object],
    library: str,
    launcher: str,
) -> None:
    queue = unique_queue()
    use_broker(redis_url)
    start = {
        "manage.py": worker_factory,
        "python -m djworker": module_worker,
        "a plain manage.py": plain_manage_worker,
    }[launcher]
    worker = start(f"--pool={library}", "-c", "20", "-Q", queue, broker_url=redis_url)
    report = AsyncResult(green_tasks.green_report.apply_async(queue=queue).id).get(timeout=20)
    assert library in report["socket"]  # the socket class comes from the green library
    assert report["psycopg_wait"] != "wait_c"  # psycopg waits cooperatively, not in C
    assert "imported before" not in worker.output
    assert f"pool:        {library}" in worker.output
    assert "db budget:   default<=10" in worker.output


def _worker_connections(app_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "select count(*) from pg_stat_activity where application_name = %s", [app_name]
        )
        return int(cursor.fetchone()[0])


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_300_greenlets_using_the_orm_stay_within_the_connection_budget(
    worker_factory: Callable[..., WorkerProcess],
    redis_url: str,
    use_broker: Callable[..., object],
    library: str,
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the connection budget is Django's psycopg pool: PostgreSQL only")
    budget, app_name, queue = 12, f"djw-budget-{uuid.uuid4().hex[:6]}", unique_queue()
    use_broker(redis_url)
    ids = [
        green_tasks.orm_then_wait.apply_async((30, f"budget-{i}"), queue=queue).id
        for i in range(300)
    ]
    worker = worker_factory(
        f"--pool={library}",
        "-c",
        "300",
        "-Q",
        queue,
        broker_url=redis_url,
        settings="tests.green.settings",
        env={"DJWORKER_DB_APP_NAME": app_name, "DJWORKER_DB_POOL_MAX": str(budget)},
    )
    assert f"default<={budget} (DATABASES['default']['OPTIONS']['pool'])" in worker.output
    peak = 0

    def all_finished() -> bool:
        nonlocal peak
        peak = max(peak, _worker_connections(app_name))
        done = TaskResult.objects.filter(id__in=ids, status__in=("SUCCESSFUL", "FAILED"))
        return done.count() == len(ids)

    wait_for(all_finished, timeout_s=120, interval_s=0.01, what="300 ORM tasks to finish")
    assert TaskResult.objects.filter(id__in=ids, status="SUCCESSFUL").count() == 300
    assert 0 < peak <= budget
    worker.signal()
    assert worker.wait(30) == 0
    time.sleep(0.2)  # the server notices closed sockets asynchronously
    wait_for(lambda: _worker_connections(app_name) == 0, timeout_s=10, what="no connection left")


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_a_green_worker_finishes_running_tasks_on_sigterm_and_enforces_hard_limits(
    worker_factory: Callable[..., WorkerProcess],
    redis_url: str,
    use_broker: Callable[..., object],
    library: str,
) -> None:
    queue = unique_queue()
    use_broker(redis_url)
    worker = worker_factory(f"--pool={library}", "-c", "50", "-Q", queue, broker_url=redis_url)
    stuck = green_tasks.sleep_forever.apply_async(queue=queue, time_limit=0.5).id
    running = [tasks.sleep.apply_async((1.0,), queue=queue).id for _ in range(5)]
    wait_for(
        lambda: TaskResult.objects.filter(id__in=running, status="RUNNING").count() == 5,
        what="five tasks running at once",
    )
    worker.signal()
    assert worker.wait(30) == 0
    assert TaskResult.objects.filter(id__in=running, status="SUCCESSFUL").count() == 5
    hard = TaskResult.objects.get(id=stuck)
    assert (hard.status, hard.exception_class) == ("FAILED", "TimeLimitExceeded")


@pytest.mark.parametrize("library", ["gevent", "eventlet"])
def test_a_running_green_task_is_terminated_by_id_and_the_worker_carries_on(
    worker_factory: Callable[..., WorkerProcess],
    redis_url: str,
    use_broker: Callable[..., object],
    library: str,
) -> None:
    queue = unique_queue()
    use_broker(redis_url)
    worker_factory(f"--pool={library}", "-c", "20", "-Q", queue, broker_url=redis_url)
    stuck = AsyncResult(green_tasks.sleep_forever.apply_async(queue=queue).id)
    wait_for(lambda: stuck.status == "RUNNING", what="the task running")
    command = stuck.terminate()
    wait_for(
        lambda: TaskResult.objects.filter(id=stuck.id, status="FAILED").exists(),
        what="the task terminated",
    )
    assert TaskResult.objects.get(id=stuck.id).exception_class == "Terminated"
    wait_for(lambda: type(command).objects.get(pk=command.pk).status == "done", what="outcome")
    assert tasks.add.apply_async((1, 2), queue=queue).get(timeout=10) == 3
