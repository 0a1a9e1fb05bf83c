"""inspect, enqueue and --version, against real workers; the failure log line's traceback;
admin times to the second."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

import djworker
from djworker.models import ControlCommand, TaskResult, Worker
from djworker.result import AsyncResult
from tests.integration.harness import WorkerProcess, unique_queue, wait_for
from tests.integration.test_admin_powers import staff
from tests.integration.test_queues import manage
from tests.taskapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def test_inspect_shows_settings_with_layers_running_tasks_and_recent_commands(
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    queue = unique_queue()
    name = f"inspected-{queue}"
    worker_factory("--pool", "threads", "-c", "2", "-Q", queue, "-n", name)
    running = tasks.sleep.apply_async((20,), queue=queue)
    wait_for(lambda: running.status == "RUNNING", what="the task to start")
    ControlCommand.objects.create(worker=Worker.objects.get(hostname=name), action="pause")

    out = StringIO()
    call_command("djworker", "inspect", name, "--json", stdout=out)
    document = json.loads(out.getvalue())
    settings = {s["name"]: (s["value"], s["layer"]) for s in document["settings"]}
    assert settings["concurrency"] == (2, "cli")
    assert settings["prefetch_multiplier"] == (4, "default")
    assert [r["id"] for r in document["running"]] == [running.id]
    assert document["commands"][0]["what"].startswith("pause")

    text = manage("djworker", "inspect", name)
    assert text.returncode == 0 and "concurrency" in text.stdout and running.id in text.stdout
    missing = manage("djworker", "inspect", name + "x")
    assert missing.returncode == 1
    assert f"no worker named '{name}x'; did you mean '{name}'?" in missing.stderr


def test_enqueue_publishes_a_registered_task_with_json_arguments(
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    queue = unique_queue()
    worker_factory("--pool", "solo", "-Q", queue)
    out = StringIO()
    call_command(
        "djworker",
        "enqueue",
        tasks.add.name,
        "--args",
        "[2]",
        "--kwargs",
        '{"y": 3}',
        "-Q",
        queue,
        stdout=out,
    )
    assert AsyncResult(out.getvalue().strip()).get(timeout=30) == 5

    bad_json = manage("djworker", "enqueue", tasks.add.name, "--args", "[2,")
    assert bad_json.returncode == 2 and "is not JSON" in bad_json.stderr
    unknown = manage("djworker", "enqueue", "tests.taskapp.tasks.ad")
    assert unknown.returncode == 2
    assert "no registered task named 'tests.taskapp.tasks.ad'; did you mean" in unknown.stderr
    assert "Traceback" not in bad_json.stderr + unknown.stderr


def test_version_prints_djworkers_version() -> None:
    for command in ("runworker", "djworker"):
        shown = manage(command, "--version")
        assert shown.returncode == 0
        assert shown.stdout.strip() == djworker.__version__


@pytest.mark.parametrize("tracebacks", ["on", "off"])
def test_a_failing_tasks_log_line_carries_its_traceback_unless_turned_off(
    tracebacks: str, worker_factory: Callable[..., WorkerProcess]
) -> None:
    queue = unique_queue()
    env = {"DJWORKER_TEST_TRACEBACKS_LEVEL": "CRITICAL"} if tracebacks == "off" else {}
    worker = worker_factory("--pool", "solo", "-Q", queue, env=env)
    failed = tasks.fail.apply_async(("kaboom",), queue=queue)
    wait_for(lambda: failed.status == "FAILED", what="the task to fail")
    worker.wait_for_output(f"id={failed.id} state=FAILED error=ValueError: kaboom")
    has_traceback = "raise ValueError(message)" in worker.output
    assert has_traceback == (tracebacks == "on")


def test_the_admin_shows_times_to_the_second_and_durations_rounded() -> None:
    at = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    TaskResult.objects.create(
        id="timed-1",
        task_name="t",
        queue=unique_queue(),
        status="SUCCESSFUL",
        enqueued_at=at,
        finished_at=at,
        wall_time_s=1.23456,
        cpu_time_s=0.0123,
    )
    viewer = staff("view_taskresult")
    shown = timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S")
    listing = viewer.get("/admin/djworker/taskresult/").content.decode()
    assert shown in listing and "1.2 s" in listing
    page = viewer.get("/admin/djworker/taskresult/timed-1/change/").content.decode()
    assert "0.01 s" in page and shown in page
