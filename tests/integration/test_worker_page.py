"""A worker's admin page: its live panel, its control buttons and their permissions.

The browser test (tests/browser/test_dashboard.py) clicks the buttons against a real worker.
"""

from __future__ import annotations

import pytest

from djworker.models import CommandStatus, ControlCommand, Worker
from tests.integration.test_dashboard import client_for

pytestmark = pytest.mark.django_db


def page_of(worker: Worker) -> str:
    return f"/admin/djworker/worker/{worker.pk}/change/"


def url_of(worker: Worker, view: str) -> str:
    return f"/admin/djworker/worker/{worker.pk}/{view}/"


def test_the_buttons_show_only_for_users_who_may_control_workers() -> None:
    worker = Worker.objects.create(hostname="w1", pool="threads", pool_size=2)
    viewer = client_for("view_worker").get(page_of(worker)).content.decode()
    assert "dw-control-grow" not in viewer
    assert "Control buttons need the permission djworker.control_worker" in viewer
    controller = client_for("view_worker", "control_worker").get(page_of(worker)).content.decode()
    for action in ("pause", "resume", "grow", "shrink", "restart_pool", "shutdown"):
        assert f"dw-control-{action}" in controller
    assert "return confirm(" in controller
    solo = Worker.objects.create(hostname="w-solo", pool="solo", pool_size=1)
    page = client_for("view_worker", "control_worker").get(page_of(solo)).content.decode()
    assert "dw-control-grow" not in page and "dw-control-pause" in page
    assert "The solo pool cannot change its size: no grow or shrink." in page


def test_a_button_needs_control_worker_and_sends_the_command_to_this_worker_only() -> None:
    worker = Worker.objects.create(hostname="w1", pool="threads", pool_size=2)
    Worker.objects.create(hostname="w2", pool="threads", pool_size=2)
    url = url_of(worker, "control")
    refused = client_for("view_worker").post(url, {"command": "grow", "n": "2"})
    assert refused.status_code == 403
    assert not ControlCommand.objects.exists()

    controller = client_for("view_worker", "control_worker")
    assert controller.get(url).status_code == 405
    assert controller.post(url, {"command": "terminate"}).status_code == 400
    page = controller.post(url, {"command": "grow", "n": "2"}, follow=True)
    assert page.redirect_chain[-1][0] == page_of(worker)
    assert "Sent &#x27;grow the pool&#x27; to 1 worker(s)" in page.content.decode()
    command = ControlCommand.objects.get()
    assert (command.worker, command.action, command.argument) == (worker, "grow", 2)

    bad = controller.post(url, {"command": "shrink", "n": "abc"}, follow=True).content.decode()
    assert "Nothing sent: N must be a whole number from 1 to 1000" in bad
    assert ControlCommand.objects.count() == 1


def test_the_live_panel_reports_the_commands_outcome_once_the_worker_does() -> None:
    worker = Worker.objects.create(hostname="w1", pool="threads", pool_size=2, busy=1)
    command = ControlCommand.objects.create(worker=worker, action="grow", argument=1)
    client = client_for("view_worker")
    live = client.get(url_of(worker, "live")).json()
    assert live["worker"]["busy"] == 1 and live["worker"]["pool_size"] == 2
    assert live["commands"][0]["status"] == "pending"
    assert "waiting for the worker" in live["html"]["live"]

    ControlCommand.objects.filter(pk=command.pk).update(
        status=CommandStatus.DONE, message="grew 2→3"
    )
    Worker.objects.filter(pk=worker.pk).update(pool_size=3)
    live = client.get(url_of(worker, "live")).json()
    assert (live["commands"][0]["message"], live["worker"]["pool_size"]) == ("grew 2→3", 3)
    assert "done: grew 2→3" in live["html"]["live"]
    assert client_for(staff=False).get(url_of(worker, "live")).status_code == 302
    assert client_for().get(url_of(worker, "live")).status_code == 403
