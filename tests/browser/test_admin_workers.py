"""An operator's path through the pool-settings and worker pages of the admin."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User

from djworker.models import ControlCommand, Worker, WorkerProfile
from tests.integration.harness import WorkerProcess, unique_queue, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOT = "/tmp/djworker-worker-list.png"


def log_in(page: Any, live_server: Any) -> None:
    User.objects.create_superuser("operator", "op@example.com", "secret-pw")
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "secret-pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")


def test_an_operator_changes_pool_settings_and_is_told_when_the_minimum_exceeds_the_maximum(
    page: Any, live_server: Any
) -> None:
    profile = WorkerProfile.objects.create(name="default", concurrency=2)
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/djworker/workerprofile/")
    page.click("text=default")
    page.fill("#id_concurrency", "5")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    profile.refresh_from_db()
    assert profile.concurrency == 5 and profile.revision == 2

    page.click("text=default")
    page.fill("#id_autoscale_min", "4")
    page.fill("#id_autoscale_max", "2")
    page.click("input[name=_save]")
    error = page.inner_text(".field-autoscale_min .errorlist")
    assert "The minimum (4) must not be above the maximum (2); allowed: 1 to 2." in error


def test_an_operator_grows_a_running_worker_by_one_from_the_worker_list(
    page: Any, live_server: Any, redis_url: str
) -> None:
    hostname = f"browser-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess(
        "-c",
        "1",
        "-Q",
        unique_queue(),
        "-n",
        hostname,
        "--profile",
        hostname,
        "--create-profile",
        broker_url=redis_url,
    ).start()
    try:
        log_in(page, live_server)
        page.goto(f"{live_server.url}/admin/djworker/worker/")
        page.check(f"tr:has-text('{hostname}') input.action-select")
        page.select_option("select[name=action]", "grow")
        page.fill("input[name=n]", "1")
        page.click("button[name=index]")
        assert "Sent 'grow the pool' to 1 worker(s)" in page.inner_text(".messagelist")
        wait_for(lambda: Worker.objects.get(hostname=hostname).pool_size == 2, what="pool of 2")
        command = ControlCommand.objects.get(worker__hostname=hostname)
        assert (command.status, command.message) == ("done", "grew 1→2")

        page.goto(f"{live_server.url}/admin/djworker/worker/")
        row = page.inner_text(f"tr:has-text('{hostname}')")
        assert "online" in row and "threads" in row
        page.screenshot(path=SCREENSHOT, full_page=True)
    finally:
        worker.stop()
