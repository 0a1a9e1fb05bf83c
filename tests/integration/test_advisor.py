"""The pool advisor from recorded result rows: the command and the dashboard's section."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from djworker.models import TaskResult, WorkerProfile
from tests.integration.test_dashboard import DASHBOARD, client_for

pytestmark = pytest.mark.django_db


def runs(task_name: str, n: int, *, cpu_s: float, wall_s: float, minutes_ago: float = 1) -> None:
    finished = timezone.now() - timedelta(minutes=minutes_ago)
    TaskResult.objects.bulk_create(
        TaskResult(
            id=uuid.uuid4().hex,
            task_name=task_name,
            queue="default",
            status="SUCCESSFUL",
            finished_at=finished,
            cpu_time_s=cpu_s,
            wall_time_s=wall_s,
        )
        for _ in range(n)
    )


def advise(*args: str) -> str:
    out = StringIO()
    call_command("djworker", "advise", *args, stdout=out)
    return out.getvalue()


def test_the_command_advises_prefork_for_cpu_bound_and_threads_for_waiting_tasks() -> None:
    runs("app.resize", 6, cpu_s=0.9, wall_s=1.0)
    runs("app.fetch", 6, cpu_s=0.01, wall_s=2.0)
    runs("app.rare", 2, cpu_s=0.5, wall_s=1.0)
    runs("app.old", 9, cpu_s=1.0, wall_s=1.0, minutes_ago=90)
    text = advise("--cpus", "4")
    assert "Pool advice from 14 task runs finished in the last 60 minutes" in text
    assert "queue cpu: prefork, 4 slots, for app.resize" in text
    assert "queue io: threads, 4 slots, for app.fetch" in text
    assert "python manage.py runworker -Q cpu --pool prefork -c 4 -n cpu@%h" in text
    assert '@djworker.task(queue="io")  # app.fetch' in text
    assert "app.rare" in text and "too few runs" in text and "app.old" not in text

    data = json.loads(advise("--json", "--window-minutes", "120", "--cpus", "2"))
    kinds = {t["task_name"]: t["kind"] for t in data["tasks"]}
    assert kinds == {
        "app.fetch": "I/O-bound",
        "app.old": "CPU-bound",
        "app.rare": "too few runs",
        "app.resize": "CPU-bound",
    }


def test_the_command_creates_the_two_profiles_and_says_when_there_is_nothing_to_advise() -> None:
    assert "nothing to advise yet" in advise("--create-profiles")
    assert not WorkerProfile.objects.exists()
    runs("app.resize", 6, cpu_s=0.9, wall_s=1.0)
    runs("app.fetch", 6, cpu_s=0.01, wall_s=2.0)
    assert "Profiles written: cpu, io." in advise("--create-profiles", "--cpus", "3")
    cpu, io = WorkerProfile.objects.order_by("name")
    assert (cpu.pool, cpu.concurrency, cpu.queues) == ("prefork", 3, "cpu")
    assert (io.pool, io.concurrency, io.queues) == ("threads", 4, "io")


def test_the_dashboard_shows_the_advice_and_only_controllers_may_create_the_profiles() -> None:
    runs("app.resize", 6, cpu_s=0.9, wall_s=1.0)
    runs("app.fetch", 6, cpu_s=0.01, wall_s=2.0)
    watcher = client_for("view_taskresult")
    page = watcher.get(f"{DASHBOARD}?advisor_window=15").content.decode()
    assert '<td class="dw-advised-pool">prefork</td>' in page
    assert '<td class="dw-advised-pool">threads</td>' in page
    assert "dw-create-profiles" not in page
    url = f"{DASHBOARD}advisor/profiles/"
    assert watcher.post(url, {"advisor_window": "15"}).status_code == 403

    controller = client_for(
        "view_taskresult", "control_worker", "add_workerprofile", "change_workerprofile"
    )
    plain = controller.get(DASHBOARD).content.decode()
    assert "dw-advise" in plain and "dw-advised-pool" not in plain  # only when asked for
    assert "dw-create-profiles" in controller.get(f"{DASHBOARD}?advisor_window=60").content.decode()
    page = controller.post(url, {"advisor_window": "15"}, follow=True).content.decode()
    assert "Profiles written: cpu, io." in page
    assert set(WorkerProfile.objects.values_list("name", "pool")) == {
        ("cpu", "prefork"),
        ("io", "threads"),
    }
