"""The TaskResult admin: listed with filters, detail with arguments/result/traceback, read-only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from djworker.models import TaskResult

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_logged_in() -> Client:
    User.objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.login(username="root", password="pw")
    return client


def make_rows() -> None:
    now = timezone.now()
    TaskResult.objects.create(
        id="ok-1",
        task_name="app.tasks.add",
        args=[1, 2],
        kwargs={"z": 3},
        status="SUCCESSFUL",
        result={"sum": 6},
        queue="default",
        worker_hostname="w1",
        attempts=1,
        enqueued_at=now,
    )
    TaskResult.objects.create(
        id="bad-1",
        task_name="app.tasks.fail",
        status="FAILED",
        queue="mail",
        exception_class="ValueError",
        exception_message="kaput",
        traceback="Traceback (most recent call last):\nValueError: kaput",
        worker_hostname="w2",
        enqueued_at=now,
    )


def test_results_are_listed_and_filtered_by_status_task_queue_and_worker(
    admin_client_logged_in: Client,
) -> None:
    make_rows()
    page = admin_client_logged_in.get("/admin/djworker/taskresult/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "ok-1" in body and "bad-1" in body
    for param in (
        "status__exact=FAILED",
        "task_name=app.tasks.fail",
        "queue=mail",
        "worker_hostname=w2",
    ):
        filtered = admin_client_logged_in.get(
            f"/admin/djworker/taskresult/?{param}"
        ).content.decode()
        assert "bad-1" in filtered and "ok-1" not in filtered, param


def test_the_detail_shows_arguments_result_and_traceback_read_only(
    admin_client_logged_in: Client,
) -> None:
    make_rows()
    ok = admin_client_logged_in.get("/admin/djworker/taskresult/ok-1/change/").content.decode()
    assert "args=[\n  1,\n  2\n]" in ok and "&quot;sum&quot;: 6" in ok
    bad = admin_client_logged_in.get("/admin/djworker/taskresult/bad-1/change/").content.decode()
    assert "ValueError: kaput" in bad
    assert 'name="_save"' not in bad  # nothing to save: read-only
    assert admin_client_logged_in.get("/admin/djworker/taskresult/add/").status_code == 403
