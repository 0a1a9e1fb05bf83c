"""The admin dashboard and its JSON endpoint, through Django's test client with real rows.

The browser tests (tests/browser/test_dashboard.py) drive the same page against real workers.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from djworker import throughput
from djworker.models import ControlCommand, TaskResult, TaskStatus, Worker, WorkerProfile
from tests.taskapp import tasks

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/djworker/dashboard/"
DATA = "/admin/djworker/dashboard/data/"


def client_for(*codenames: str, staff: bool = True, superuser: bool = False) -> Client:
    name = f"u{uuid.uuid4().hex[:8]}"
    if superuser:
        user = User.objects.create_superuser(name, password="pw")
    else:
        user = User.objects.create_user(name, password="pw", is_staff=staff)
        user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.login(username=name, password="pw")
    return client


def result(status: str = TaskStatus.SUCCESSFUL, **fields: Any) -> TaskResult:
    defaults: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "task_name": "tests.add",
        "queue": "default",
        "status": status,
    }
    return TaskResult.objects.create(**{**defaults, **fields})


def test_the_admin_index_links_the_dashboard_for_staff() -> None:
    page = client_for().get("/admin/")
    assert page.status_code == 200
    assert DASHBOARD in page.content.decode()


def test_the_dashboard_and_its_json_are_refused_to_anonymous_and_non_staff_users() -> None:
    for client in (Client(), client_for(staff=False)):
        for url in (DASHBOARD, DATA):
            response = client.get(url)
            assert response.status_code == 302, url
            assert response["Location"].startswith("/admin/login/")


def test_a_staff_user_without_view_permissions_sees_which_permission_shows_each_part() -> None:
    Worker.objects.create(hostname="secret-host")
    result(TaskStatus.RUNNING, task_name="secret.task", worker_hostname="secret-host")
    page = client_for().get(DASHBOARD).content.decode()
    assert "secret-host" not in page and "secret.task" not in page
    assert "Workers need the permission djworker.view_worker" in page
    assert "Running tasks need the permission djworker.view_taskresult" in page
    data = client_for().get(DATA).json()
    assert "workers" not in data and "running" not in data


def test_the_json_lists_workers_with_their_figures_and_a_silent_worker_turns_stale_or_lost() -> (
    None
):
    profile = WorkerProfile.objects.create(name=f"p{uuid.uuid4().hex[:6]}")
    Worker.objects.create(
        hostname="w-live",
        pool="threads",
        pool_size=4,
        busy=3,
        rss_kib=2048,
        queues="default,mail",
        profile=profile,
        applied_revision=profile.revision,
        settings=[["autoscale", [2, 6], "cli"]],
    )
    Worker.objects.create(
        hostname="w-silent",
        pool="prefork",
        pool_size=2,
        last_heartbeat=timezone.now() - timedelta(seconds=16),
        heartbeat_interval_s=5,
    )
    Worker.objects.create(hostname="w-lost", pool="threads", pool_size=3, busy=2, state="lost")
    data = client_for("view_worker").get(DATA).json()
    rows = {w["hostname"]: w for w in data["workers"]}
    live = rows["w-live"]
    assert (live["state"], live["busy"], live["pool_size"], live["autoscale"]) == (
        "online",
        3,
        4,
        "2..6",
    )
    assert (live["rss_mib"], live["profile"], live["profile_applied"]) == (2.0, profile.name, "yes")
    assert rows["w-silent"]["state"] == "stale"
    assert [w["hostname"] for w in data["workers"]] == ["w-silent", "w-lost", "w-live"]
    assert (rows["w-lost"]["state"], rows["w-lost"]["busy"]) == ("lost", 0)
    assert data["totals"] == {"online": 1, "stale": 1, "lost": 1, "slots": 6, "busy": 3}
    assert 'class="state-stale">stale' in data["html"]["workers"]


def test_running_tasks_show_a_terminate_button_only_where_the_pool_can_terminate() -> None:
    Worker.objects.create(hostname="w-prefork", pool="prefork", pool_size=2, busy=1)
    Worker.objects.create(hostname="w-threads", pool="threads", pool_size=2, busy=1)
    Worker.objects.create(hostname="w-custom", pool="myproject.pools:Pool", pool_size=2, busy=1)
    started = timezone.now() - timedelta(seconds=30)
    killable = result(TaskStatus.RUNNING, worker_hostname="w-prefork", started_at=started)
    result(TaskStatus.RUNNING, worker_hostname="w-threads", started_at=started)
    result(TaskStatus.RUNNING, worker_hostname="w-custom", started_at=started)
    controller = client_for("view_worker", "view_taskresult", "control_worker")
    data = controller.get(DATA).json()
    by_worker = {t["worker_hostname"]: t for t in data["running"]}
    assert by_worker["w-prefork"]["can_terminate"] is True
    assert by_worker["w-threads"]["can_terminate"] is False
    assert by_worker["w-custom"]["can_terminate"] is True  # its worker judges
    assert by_worker["w-prefork"]["running_for_s"] >= 30
    assert data["html"]["running"].count('class="button dw-terminate"') == 2
    assert killable.id in data["html"]["running"]

    watcher = client_for("view_worker", "view_taskresult")
    assert "dw-terminate" not in watcher.get(DATA).json()["html"]["running"]


def test_running_tasks_show_the_progress_they_report() -> None:
    Worker.objects.create(hostname="w1", pool="threads", pool_size=2, busy=2)
    result(TaskStatus.RUNNING, worker_hostname="w1", started_at=timezone.now())
    result(
        TaskStatus.RUNNING,
        worker_hostname="w1",
        started_at=timezone.now() - timedelta(seconds=5),
        progress_done=3,
        progress_total=10,
        progress_note="rows <b>",
    )
    data = client_for("view_taskresult").get(DATA).json()
    assert [t["progress"] for t in data["running"]] == [
        {"done": 3, "total": 10, "note": "rows <b>"},
        None,
    ]
    assert '<progress value="3" max="10"></progress> 3/10 rows &lt;b&gt;' in data["html"]["running"]


def test_terminate_needs_control_worker_and_creates_the_command_for_the_tasks_worker() -> None:
    worker = Worker.objects.create(hostname="w-prefork", pool="prefork", pool_size=2, busy=1)
    task = result(TaskStatus.RUNNING, worker_hostname="w-prefork", started_at=timezone.now())
    url = f"{DASHBOARD}terminate/"
    refused = client_for("view_worker", "view_taskresult").post(url, {"task_id": task.id})
    assert refused.status_code == 403
    assert not ControlCommand.objects.exists()

    controller = client_for("view_worker", "view_taskresult", "control_worker")
    page = controller.post(url, {"task_id": task.id}, follow=True).content.decode()
    assert f"Asked worker w-prefork to terminate task {task.id}" in page
    command = ControlCommand.objects.get()
    assert (command.worker, command.action, command.task_id) == (worker, "terminate", task.id)

    done = result(TaskStatus.SUCCESSFUL)
    page = controller.post(url, {"task_id": done.id}, follow=True).content.decode()
    assert "only a RUNNING task can be terminated" in page


def test_throughput_counts_finished_and_failed_tasks_per_minute_of_the_last_hour() -> None:
    now = timezone.now()
    for minutes_ago, status in [
        (0, "SUCCESSFUL"),
        (0, "FAILED"),
        (5, "SUCCESSFUL"),
        (61, "FAILED"),
    ]:
        result(status, finished_at=now - timedelta(minutes=minutes_ago))
    result(TaskStatus.RUNNING)
    series = throughput.per_minute(now=now)
    assert (series.total_finished, series.total_failed) == (3, 1)
    assert (series.finished[-1], series.failed[-1], series.finished[-6]) == (2, 1, 1)
    chart = throughput.svg(series)
    assert chart.startswith("<svg") and "3 finished, 1 failed" in chart
    assert "http" not in chart.replace("http://www.w3.org/2000/svg", "")


def test_queues_show_the_brokers_figures_and_the_workers_consuming_them() -> None:
    Worker.objects.create(hostname="w1", queues="mail,default")
    for _ in range(2):
        tasks.add.apply_async((1, 2), queue="mail")
    tasks.add.apply_async((1, 2), queue="mail", countdown=600)
    data = client_for("view_worker").get(DATA).json()
    queues = {q["name"]: q for q in data["queues"]}
    mail = queues["mail"]
    assert (mail["ready"], mail["delayed"], mail["reserved"], mail["workers"]) == (2, 1, 0, 1)
    assert mail["oldest_age_s"] >= 0
    assert queues["default"]["ready"] == 0 and data["broker_error"] == ""
    assert 'data-queue="mail"' in data["html"]["queues"]


def test_the_refresh_query_count_does_not_grow_with_result_rows_or_workers() -> None:
    client = client_for(superuser=True)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(DATA).status_code == 200
        return len(captured)

    Worker.objects.create(hostname="w0", queues="default")
    result(TaskStatus.RUNNING, worker_hostname="w0", started_at=timezone.now())
    few = queries()
    Worker.objects.bulk_create(Worker(hostname=f"w{i}", queues="default") for i in range(1, 30))
    TaskResult.objects.bulk_create(
        TaskResult(
            id=uuid.uuid4().hex,
            task_name=f"t{i % 7}",
            queue="default",
            status=[TaskStatus.SUCCESSFUL, TaskStatus.FAILED, TaskStatus.RUNNING][i % 3],
            worker_hostname=f"w{i % 30}",
            started_at=timezone.now(),
            finished_at=timezone.now(),
        )
        for i in range(600)
    )
    assert queries() == few
