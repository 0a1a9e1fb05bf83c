"""An operator watches and steers real workers from the dashboard, the worker page, the pool
settings page and the advisor, in a real Chromium against a live server.

The screenshots these tests take are the ones in docs/ (set DJWORKER_SCREENSHOTS=docs to
refresh them; by default they go to a temporary folder).
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from djworker.models import ControlCommand, TaskResult, Worker, WorkerProfile
from tests.browser.test_admin_workers import log_in
from tests.integration.harness import WorkerProcess, unique_queue, wait_for
from tests.taskapp import tasks

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def screenshot(page: Any, name: str) -> None:
    folder = os.environ.get("DJWORKER_SCREENSHOTS", "")
    target = ROOT / folder if folder else Path("/tmp/djworker-screenshots")
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / name), full_page=True)


Started = tuple[WorkerProcess, str, str]


@pytest.fixture
def start_worker(redis_url: str, use_broker: Any) -> Iterator[Callable[[int], Started]]:
    """Start real threads workers on Redis, each with its own queue and profile; the test
    publishes to their queues. They are killed at the end."""
    use_broker(redis_url)
    started: list[WorkerProcess] = []

    def start(concurrency: int) -> Started:
        hostname = f"browser-{uuid.uuid4().hex[:6]}"
        queue = unique_queue()
        process = WorkerProcess(
            *("--pool", "threads", "-c", str(concurrency), "-Q", queue, "-n", hostname),
            *("--profile", hostname, "--create-profile"),
            broker_url=redis_url,
        )
        started.append(process)
        return process.start(), hostname, queue

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def worker(start_worker: Callable[[int], Started]) -> Started:
    """A worker of two slots."""
    return start_worker(2)


def busy_cell(page: Any, hostname: str) -> str:
    return str(page.inner_text(f"tr[data-worker='{hostname}'] .dw-busy"))


def test_the_dashboard_shows_a_running_worker_and_its_busy_count_changes_without_a_reload(
    page: Any, live_server: Any, worker: tuple[WorkerProcess, str, str]
) -> None:
    _, hostname, queue = worker
    wait_for(lambda: Worker.objects.filter(hostname=hostname).exists(), what="worker row")
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/")
    page.click("a[href='/admin/djworker/dashboard/']")
    page.wait_for_selector(f"tr[data-worker='{hostname}']")
    assert busy_cell(page, hostname) == "0 / 2"
    assert "online" in page.inner_text(f"tr[data-worker='{hostname}']")
    page.evaluate("window.djworkerNotReloaded = true")

    tasks.sleep.apply_async((8,), queue=queue)
    tasks.count_with_progress.apply_async((16, 0.5), queue=queue)
    page.wait_for_function(
        f"document.querySelector(\"tr[data-worker='{hostname}'] .dw-busy\")"
        ".textContent.trim() === '2 / 2'",
        timeout=30_000,
    )
    assert "tests.taskapp.tasks.sleep" in page.inner_text("#dw-running")
    page.wait_for_selector("#dw-running progress", timeout=30_000)  # reported, refreshed in
    assert "/16 step " in page.inner_text("#dw-running .dw-progress >> nth=-1")
    screenshot(page, "dashboard.png")
    page.wait_for_function(
        f"document.querySelector(\"tr[data-worker='{hostname}'] .dw-busy\")"
        ".textContent.trim() === '0 / 2'",
        timeout=30_000,
    )
    assert page.evaluate("window.djworkerNotReloaded") is True


def test_a_grow_click_on_the_worker_page_resizes_the_real_pool_and_the_page_shows_it(
    page: Any, live_server: Any, worker: tuple[WorkerProcess, str, str]
) -> None:
    _, hostname, _ = worker
    row = wait_for(lambda: Worker.objects.filter(hostname=hostname).first(), what="worker row")
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/djworker/worker/{row.pk}/change/")
    assert page.inner_text("#dw-size") == "0 / 2"
    questions: list[str] = []

    def accept(dialog: Any) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    page.fill(".dw-control-grow input[name=n]", "2")
    page.click(".dw-control-grow button")
    assert questions == [f"Grow the pool of {hostname} by 2?"]
    assert "Sent 'grow the pool' to 1 worker(s)" in page.inner_text(".messagelist")
    page.evaluate("window.djworkerNotReloaded = true")
    page.wait_for_function(
        "document.getElementById('dw-size').textContent.trim() === '0 / 4'", timeout=30_000
    )
    page.wait_for_selector(".dw-outcome-done:has-text('done: grew 2→4')", timeout=30_000)
    assert Worker.objects.get(pk=row.pk).pool_size == 4
    assert page.evaluate("window.djworkerNotReloaded") is True
    screenshot(page, "worker-page.png")

    page.on("dialog", lambda dialog: dialog.dismiss())
    page.remove_listener("dialog", accept)
    page.click(".dw-control-shutdown button")
    assert page.inner_text("#dw-state") == "online"
    assert not ControlCommand.objects.filter(worker=row, action="shutdown").exists()


def test_editing_the_pool_settings_page_applies_to_the_running_worker_and_says_what_it_kept(
    page: Any, live_server: Any, worker: tuple[WorkerProcess, str, str]
) -> None:
    _, hostname, _ = worker
    row = wait_for(lambda: Worker.objects.filter(hostname=hostname).first(), what="worker row")
    profile = WorkerProfile.objects.get(name=hostname)
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/djworker/workerprofile/{profile.pk}/change/")
    assert "prefork: CPU-bound work" in page.inner_text(".field-pool")
    page.fill("#id_concurrency", "3")
    page.fill("#id_prefetch_multiplier", "2")
    page.fill("#id_max_memory_per_child", "")
    page.click("input[name=_continue]")
    messages = page.inner_text(".messagelist")
    assert "keeps concurrency 2 pinned by --concurrency" in messages

    page.wait_for_selector(
        f"tr[data-worker='{hostname}'] .dw-follow-status:has-text('applied revision 2')",
        timeout=30_000,
    )
    applied = page.inner_text(f"tr[data-worker='{hostname}']")
    assert "prefetch_multiplier 2" in applied
    assert "keeps concurrency 2 pinned by --concurrency" in applied
    settings = {
        field: (value, layer) for field, value, layer in Worker.objects.get(pk=row.pk).settings
    }
    assert settings["prefetch_multiplier"] == (2, "admin")
    assert settings["concurrency"] == (2, "cli")
    screenshot(page, "pool-settings.png")


def test_after_a_mixed_load_the_advisor_recommends_prefork_for_cpu_work_and_threads_for_waits(
    page: Any, live_server: Any, start_worker: Callable[[int], Started]
) -> None:
    # One slot: the CPU-bound task shares the GIL with no other task.
    _, _, queue = start_worker(1)
    for _ in range(5):
        tasks.spin.apply_async((0.15,), queue=queue)
        tasks.sleep.apply_async((0.3,), queue=queue)
    wait_for(
        lambda: TaskResult.objects.filter(status="SUCCESSFUL").count() == 10,
        timeout_s=60,
        what="10 finished runs",
    )
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/djworker/dashboard/?advisor_window=15")
    cpu_row = page.inner_text(".dw-advice-groups tr[data-queue='cpu']")
    io_row = page.inner_text(".dw-advice-groups tr[data-queue='io']")
    assert "prefork" in cpu_row and "tests.taskapp.tasks.spin" in cpu_row
    assert "tests.taskapp.tasks.sleep" in io_row
    assert io_row.split("\t")[1] in ("threads", "gevent")
    assert "I/O-bound" in page.inner_text(
        ".dw-advice-tasks tr[data-task-name='tests.taskapp.tasks.sleep']"
    )
    page.locator("#dw-advisor").scroll_into_view_if_needed()
    screenshot(page, "advisor.png")


def test_a_worker_that_stops_beating_turns_stale_on_the_open_dashboard(
    page: Any, live_server: Any, worker: Started
) -> None:
    process, hostname, _ = worker
    wait_for(lambda: Worker.objects.filter(hostname=hostname).exists(), what="worker row")
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/djworker/dashboard/")
    cell = f"tr[data-worker='{hostname}'] td:nth-child(2)"
    assert page.inner_text(cell) == "online"
    process.signal(signal.SIGSTOP)  # frozen: no heartbeat, no stop recorded
    try:
        # stale after three 5 s intervals without a heartbeat; the page refreshes every 3 s
        page.wait_for_function(
            f'document.querySelector("{cell}").textContent.trim() === "stale"', timeout=45_000
        )
    finally:
        process.signal(signal.SIGCONT)
    assert Worker.objects.get(hostname=hostname).state == "online"  # as stored: only shown stale
