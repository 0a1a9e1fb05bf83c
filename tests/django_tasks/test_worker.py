"""django.tasks tasks run by real ``runworker`` subprocesses through WorkerBackend.

Threads and prefork pools, on the database the suite runs on: PostgreSQL by default, SQLite
with ``DATABASE_URL=sqlite:///...`` (see docs/django-tasks.md for the command). The broker is
``django://`` on that same database.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from djworker.models.results import TaskResult as ResultRow
from djworker.tasks_framework import TaskResult, TaskResultStatus, task
from tests.integration.harness import WorkerProcess, unique_queue, wait_for
from tests.taskapp import framework_tasks as tasks
from tests.taskapp import tasks as native_tasks

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

POOLS = ["threads", "prefork"]
#: the main scenario runs on every pool
ALL_POOLS = [*POOLS, "gevent", "eventlet"]


@task
def only_in_the_test_process() -> None:
    """Registered here only: workers import tasks.py modules, never this one."""


def finished(*results: TaskResult, timeout_s: float = 60) -> None:  # type: ignore[type-arg]
    def all_done() -> bool:
        for result in results:
            result.refresh()
        return all(r.is_finished for r in results)

    try:
        wait_for(all_done, timeout_s=timeout_s, what="the results to finish")
    except AssertionError as exc:
        waiting = [(r.task.name, r.id, str(r.status)) for r in results if not r.is_finished]
        raise AssertionError(f"{exc}; still waiting: {waiting}") from None


def signal_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def settled_signal_lines(path: Path, *result_ids: str) -> list[list[str]]:
    """The signal log once it holds a ``task_finished`` for every id.

    The worker stores a result's row before it sends ``task_finished`` (as Django's backends
    do), so a test that saw the row finished may read the log a moment too early.
    """

    def logged() -> bool:
        sent = {line[3] for line in signal_lines(path) if line[0] == "task_finished"}
        return all(result_id in sent for result_id in result_ids)

    wait_for(logged, timeout_s=10, what="task_finished for every result")
    return signal_lines(path)


@pytest.mark.parametrize("pool", ALL_POOLS)
def test_a_worker_runs_django_tasks_next_to_djworker_tasks(
    worker_factory: Callable[..., WorkerProcess], pool: str, tmp_path: Path
) -> None:
    queue = unique_queue("dt")
    signal_log = tmp_path / "signals.log"
    worker = worker_factory(
        "--pool", pool, "-c", "2", "-Q", queue, env={"DJWORKER_TEST_SIGNAL_LOG": str(signal_log)}
    )
    on_queue = {"queue_name": queue}
    meaning = tasks.calculate_meaning_of_life.using(**on_queue).enqueue()
    added = tasks.add_async.using(**on_queue).enqueue(2, 3)
    echoed = tasks.echo.using(**on_queue).enqueue(1, [2], key="v")
    failed = tasks.failing_value_error.using(**on_queue).enqueue("worker side")
    exited = tasks.failing_system_exit.using(**on_queue).enqueue()
    context = tasks.context_report.using(**on_queue).enqueue()
    unknown = only_in_the_test_process.using(**on_queue).enqueue()
    redacted = tasks.redacted_echo.using(**on_queue).enqueue("password", token="secret")
    deferred = tasks.noop.using(run_after=timezone.now() + timedelta(seconds=2), **on_queue)
    later = deferred.enqueue()
    native = native_tasks.add.apply_async((20, 22), queue=queue)

    finished(meaning, added, echoed, failed, exited, context, unknown, later, redacted)
    assert native.get(timeout=30) == 42

    assert (meaning.status, meaning.return_value) == (TaskResultStatus.SUCCESSFUL, 42)
    assert added.return_value == 5
    assert echoed.return_value == {"args": [1, [2]], "kwargs": {"key": "v"}}
    # The task got the values its row does not show.
    assert redacted.return_value == {"args": ["password"], "kwargs": {"token": "secret"}}
    stored = tasks.redacted_echo.get_result(redacted.id)
    if tasks.TASK_TAKES_EXTRAS:
        assert (stored.args, stored.kwargs) == (["[redacted]"], {"token": "[redacted]"})
    hostname = ResultRow.objects.get(id=meaning.id).worker_hostname
    assert meaning.worker_ids == [hostname] and meaning.attempts == 1
    assert meaning.enqueued_at <= meaning.started_at <= meaning.finished_at
    assert meaning.last_attempted_at == meaning.started_at

    assert failed.status == TaskResultStatus.FAILED
    [error] = failed.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.traceback.endswith("ValueError: worker side\n")
    assert [e.exception_class_path for e in exited.errors] == ["builtins.SystemExit"]

    assert context.return_value == {
        "id": context.id,
        "attempt": 1,
        "status": "RUNNING",
        "worker_ids": [hostname],
    }
    # A task the worker does not know is refused, and the worker carries on.
    assert unknown.status == TaskResultStatus.FAILED
    assert unknown.errors[0].exception_class_path == "djworker.exceptions.UnknownTask"
    assert later.started_at >= later.task.run_after

    ran = [meaning, added, echoed, failed, exited, context, later, redacted]
    lines = settled_signal_lines(signal_log, *(result.id for result in ran))
    counts = Counter((name, result_id) for name, _, _, result_id, _ in lines)
    for result in ran:
        assert counts[("task_started", result.id)] == 1
        assert counts[("task_finished", result.id)] == 1
    assert {sender for _, sender, *_ in lines} == {"djworker.backend.WorkerBackend"}
    finished_status = {rid: status for name, _, status, rid, _ in lines if name == "task_finished"}
    assert finished_status[meaning.id] == "SUCCESSFUL"
    assert finished_status[failed.id] == "FAILED"
    if pool == "prefork":  # sent from the process that ran the task
        assert {pid for *_, pid in lines} != {str(worker.process.pid)}
    assert worker.process is not None and worker.process.poll() is None


@tasks.needs_task_extras
@pytest.mark.parametrize("pool", POOLS)
def test_max_retries_runs_a_failing_task_again_and_keeps_every_error(
    worker_factory: Callable[..., WorkerProcess], pool: str, tmp_path: Path
) -> None:
    queue = unique_queue("dt")
    signal_log = tmp_path / "signals.log"
    env = {"DJWORKER_TEST_SIGNAL_LOG": str(signal_log)}
    worker_factory("--pool", pool, "-c", "2", "-Q", queue, env=env)
    runs = tmp_path / "runs"
    runs.mkdir()
    result = tasks.fail_until.using(queue_name=queue).enqueue(str(runs), 3)
    finished(result)

    assert (result.status, result.return_value, result.attempts) == (
        TaskResultStatus.SUCCESSFUL,
        3,
        3,
    )
    assert [e.exception_class_path for e in result.errors] == ["builtins.ConnectionError"] * 2
    assert result.started_at < result.last_attempted_at
    # Each run starts once; the call finishes once, after its last run.
    logged = settled_signal_lines(signal_log, result.id)
    sent = [(line[0], line[2]) for line in logged if line[3] == result.id]
    assert sent == [("task_started", "RUNNING")] * 3 + [("task_finished", "SUCCESSFUL")]


@pytest.mark.parametrize("pool", POOLS)
def test_a_worker_killed_mid_task_leaves_no_result_running(
    worker_factory: Callable[..., WorkerProcess], pool: str, tmp_path: Path
) -> None:
    queue = unique_queue("dt")
    # A short lease, so the killed worker's message comes back within the test.
    env = {"DJWORKER_BROKER_TRANSPORT_OPTIONS": json.dumps({"visibility_timeout": 3})}
    first = worker_factory("--pool", pool, "-c", "1", "-Q", queue, env=env)
    marker = tmp_path / "started"
    result = tasks.block_until_killed.using(queue_name=queue).enqueue(str(marker))
    wait_for(marker.exists, timeout_s=30, what="the first run to start")
    first.stop()  # SIGKILL
    result.refresh()
    assert result.status == TaskResultStatus.RUNNING
    first_start = result.started_at

    worker_factory("--pool", pool, "-c", "1", "-Q", queue, env=env)
    finished(result)
    assert (result.status, result.return_value, result.attempts) == (
        TaskResultStatus.SUCCESSFUL,
        2,
        2,
    )
    assert result.started_at == first_start < result.last_attempted_at
    assert len(result.worker_ids) == 2


@tasks.needs_task_extras
@pytest.mark.parametrize("pool", POOLS)
def test_a_run_over_its_delivery_cap_is_failed_unrun_and_sends_task_finished_once(
    worker_factory: Callable[..., WorkerProcess], pool: str, tmp_path: Path
) -> None:
    queue = unique_queue("dt")
    signal_log = tmp_path / "signals.log"
    env = {
        "DJWORKER_BROKER_TRANSPORT_OPTIONS": json.dumps({"visibility_timeout": 3}),
        "DJWORKER_TEST_SIGNAL_LOG": str(signal_log),
    }
    first = worker_factory("--pool", pool, "-c", "1", "-Q", queue, env=env)
    marker = tmp_path / "started"
    # @task(max_deliveries=1): the delivery after the killed one must not run.
    result = tasks.capped_block_until_killed.using(queue_name=queue).enqueue(str(marker))
    wait_for(marker.exists, timeout_s=30, what="the first run to start")
    first.stop()  # SIGKILL
    second = worker_factory("--pool", pool, "-c", "1", "-Q", queue, env=env)
    finished(result)

    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == "djworker.exceptions.DeliveryLimitExceeded"
    assert "max_deliveries=1 (task" in error.traceback
    assert len(result.worker_ids) == 2  # the refused delivery counts, it never ran
    logged = settled_signal_lines(signal_log, result.id)
    lines = [line[:4] for line in logged if line[3] == result.id]
    sender = "djworker.backend.WorkerBackend"
    assert lines == [
        ["task_started", sender, "RUNNING", result.id],
        ["task_finished", sender, "FAILED", result.id],
    ]
    assert second.process is not None and second.process.poll() is None


def test_higher_priorities_run_first_on_one_queue(
    worker_factory: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    queue = unique_queue("dt")
    order = tmp_path / "order.txt"
    calls: list[Any] = []
    for priority in (-100, 0, 100, -50, 60):
        on_queue = tasks.record_order.using(queue_name=queue, priority=priority)
        calls.append(on_queue.enqueue(str(order), str(priority)))
    worker_factory("--pool", "threads", "-c", "1", "--prefetch-multiplier", "1", "-Q", queue)
    finished(*calls)
    assert order.read_text().split() == ["100", "60", "0", "-50", "-100"]


@tasks.needs_task_extras
def test_a_time_limit_given_to_the_decorator_stops_the_task(
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    queue = unique_queue("dt")
    worker = worker_factory("--pool", "prefork", "-c", "1", "-Q", queue)
    stopped = tasks.sleep_past_limit.using(queue_name=queue).enqueue(60)
    after = tasks.calculate_meaning_of_life.using(queue_name=queue).enqueue()
    finished(stopped, after)
    assert stopped.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in stopped.errors] == [
        "djworker.exceptions.TimeLimitExceeded"
    ]
    assert after.return_value == 42
    assert worker.process is not None and worker.process.poll() is None


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_a_worker_on_redis_or_rabbitmq_runs_django_tasks_in_priority_order(
    worker_factory: Callable[..., WorkerProcess],
    use_broker: Callable[..., Any],
    request: pytest.FixtureRequest,
    broker: str,
    pool: str,
    tmp_path: Path,
) -> None:
    broker_url = request.getfixturevalue(f"{broker}_url")
    use_broker(broker_url)
    queue = unique_queue("dt")
    order = tmp_path / "order.txt"
    calls = [
        tasks.record_order.using(queue_name=queue, priority=priority).enqueue(str(order), label)
        for priority, label in ((-100, "low"), (100, "high"), (0, "default"))
    ]
    failed = tasks.failing_value_error.using(queue_name=queue).enqueue("on " + broker)
    added = tasks.add_async.using(queue_name=queue).enqueue(2, 3)
    worker = worker_factory(
        "--pool", pool, "-c", "1", "--prefetch-multiplier", "1", "-Q", queue, broker_url=broker_url
    )
    finished(*calls, failed, added)
    assert order.read_text().split() == ["high", "default", "low"]
    assert [c.return_value for c in calls] == ["low", "high", "default"]
    assert added.return_value == 5
    [error] = failed.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.traceback.endswith(f"ValueError: on {broker}\n")
    assert worker.process is not None and worker.process.poll() is None


def test_a_running_django_task_can_be_terminated_like_any_other(
    worker_factory: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    from djworker import AsyncResult

    queue = unique_queue("dt")
    signal_log = tmp_path / "signals.log"
    worker = worker_factory(
        "--pool",
        "prefork",
        "-c",
        "1",
        "-Q",
        queue,
        env={"DJWORKER_TEST_SIGNAL_LOG": str(signal_log)},
    )
    marker = tmp_path / "started"
    result = tasks.block_until_killed.using(queue_name=queue).enqueue(str(marker))
    wait_for(marker.exists, timeout_s=30, what="the run to start")
    wait_for(lambda: AsyncResult(result.id).status == "RUNNING", what="the RUNNING row")
    AsyncResult(result.id).terminate()
    finished(result)

    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class_path == "djworker.exceptions.Terminated"
    assert error.exception_class.__name__ == "Terminated"
    logged = settled_signal_lines(signal_log, result.id)
    finished_lines = [line for line in logged if line[0] == "task_finished"]
    assert [(line[2], line[3]) for line in finished_lines] == [("FAILED", result.id)]
    assert worker.process is not None and worker.process.poll() is None


@pytest.mark.parametrize("pool", POOLS)
def test_a_task_whose_function_no_longer_imports_fails_with_the_import_error(
    worker_factory: Callable[..., WorkerProcess], pool: str
) -> None:
    from tests.taskapp import framework_lost

    queue = unique_queue("dt")
    # The worker's deploy no longer defines renamed_later; its module still imports.
    worker = worker_factory(
        "--pool", pool, "-c", "2", "-Q", queue, env={"DJWORKER_TEST_LOST_TASKS": "function"}
    )
    lost = framework_lost.renamed_later.using(queue_name=queue).enqueue()
    # Imported on demand by the worker (no tasks.py imports the module), then run.
    here = framework_lost.still_here.using(queue_name=queue).enqueue()
    after = tasks.calculate_meaning_of_life.using(queue_name=queue).enqueue()
    finished(lost, here, after)

    assert lost.status == TaskResultStatus.FAILED
    [error] = lost.errors
    assert error.exception_class_path == "builtins.ImportError"
    assert 'does not define a "renamed_later" attribute' in error.traceback
    assert "AttributeError" in error.traceback  # the cause, chained
    assert (here.return_value, after.return_value) == ("here", 42)
    assert worker.process is not None and worker.process.poll() is None


def test_a_task_whose_module_no_longer_imports_fails_with_the_import_error(
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    from tests.taskapp import framework_lost

    queue = unique_queue("dt")
    worker = worker_factory(
        "--pool", "threads", "-Q", queue, env={"DJWORKER_TEST_LOST_TASKS": "module"}
    )
    lost = framework_lost.still_here.using(queue_name=queue).enqueue()
    after = tasks.calculate_meaning_of_life.using(queue_name=queue).enqueue()
    finished(lost, after)

    assert lost.status == TaskResultStatus.FAILED
    [error] = lost.errors
    assert error.exception_class_path == "builtins.ImportError"
    assert error.traceback.endswith(
        "ImportError: tests.taskapp.framework_lost cannot be imported in this deploy\n"
    )
    assert 'framework_lost.py", line' in error.traceback
    assert after.return_value == 42
    assert worker.process is not None and worker.process.poll() is None


def test_the_demo_command_enqueues_a_django_task_a_worker_runs(
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    from io import StringIO

    from django.core.management import call_command

    from example_project.demo import tasks as demo_tasks

    out = StringIO()
    call_command("enqueue_demo", "1", stdout=out)
    [line] = [line for line in out.getvalue().splitlines() if "django.tasks task" in line]
    result_id = line.split("result id ")[1].split(",")[0]
    greeting = demo_tasks.greet.get_result(result_id)
    worker_factory("--pool", "threads", "-c", "4", "-Q", "default")
    finished(greeting)
    assert (greeting.status, greeting.return_value) == (
        TaskResultStatus.SUCCESSFUL,
        "hello, djworker",
    )


def test_a_paused_profile_holds_django_tasks_until_it_is_resumed(
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    import time
    import uuid

    from djworker.models import Worker, WorkerConfig

    queue, hostname = unique_queue("dt"), f"dtpause-{uuid.uuid4().hex[:8]}"
    profile = WorkerConfig.objects.create(name=f"dt-{uuid.uuid4().hex[:8]}", queues=queue)
    worker_factory("--pool", "threads", "--config", profile.name, "-n", hostname)
    profile.paused = True
    profile.save()
    wait_for(
        lambda: Worker.objects.filter(
            hostname=hostname, paused=True, applied_revision=profile.revision
        ).exists(),
        what="the worker to pause",
    )
    held = tasks.calculate_meaning_of_life.using(queue_name=queue).enqueue()
    time.sleep(1.5)
    held.refresh()
    assert held.status == TaskResultStatus.READY
    profile.paused = False
    profile.save()
    finished(held)
    assert held.return_value == 42
