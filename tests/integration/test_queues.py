"""Queue figures and purge through one interface, on every broker; the status and purge commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from io import StringIO

import pytest
from django.core.management import call_command

from djworker.broker import get_broker
from djworker.queues import UNKNOWN, QueueStats, inspector_for
from tests.integration.harness import (
    ROOT,
    WorkerProcess,
    database_url_for_workers,
    unique_queue,
    wait_for,
)
from tests.taskapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def stats(name: str) -> QueueStats:
    (figures,) = inspector_for(get_broker()).stats([name])
    return figures


def manage(*args: str, broker_url: str = "django://") -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url_for_workers(),
        "DJWORKER_BROKER_URL": broker_url,
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def test_queue_figures_come_from_the_broker_and_purge_leaves_other_queues_intact(
    every_broker,
) -> None:
    purged, kept = unique_queue("purged"), unique_queue("kept")
    tasks.noop.apply_async(queue=purged)
    tasks.noop.apply_async(queue=purged, countdown=300)
    tasks.noop.apply_async(queue=kept)

    figures = stats(purged)
    if every_broker == "django://":
        # The database broker keeps a countdown message until it is due: delayed, not ready.
        assert (figures.ready, figures.delayed, figures.reserved) == (1, 1, 0)
    else:
        # Redis and RabbitMQ hand it to the first worker that asks, so it waits as ready.
        assert figures.ready == 2
    if every_broker.startswith("amqp"):
        assert (figures.delayed, figures.reserved, figures.oldest_age_s) == (UNKNOWN,) * 3
        assert figures.consumers == 0
    else:
        assert isinstance(figures.oldest_age_s, float)

    out = StringIO()
    call_command("djworker", "purge", purged, "--force", stdout=out)
    assert f"purged 2 message(s) from {purged}" in out.getvalue()
    after = stats(purged)
    assert after.ready == 0
    assert after.oldest_age_s is None
    if every_broker == "django://":
        assert after.delayed == 0
    assert stats(kept).ready == 1


def test_messages_a_worker_holds_count_as_reserved_or_delayed_never_as_ready(
    every_broker, worker_factory: Callable[..., WorkerProcess]
) -> None:
    queue = unique_queue()
    running = tasks.sleep.apply_async((30,), queue=queue)
    tasks.noop.apply_async(queue=queue, countdown=300)
    worker_factory("--pool", "threads", "-c", "1", "-Q", queue, broker_url=every_broker)
    wait_for(lambda: running.status == "RUNNING", what="the sleeping task to start")

    def held() -> QueueStats | None:
        figures = stats(queue)
        return figures if figures.ready == 0 else None

    figures = wait_for(held, what="no ready message left")
    if every_broker.startswith("amqp"):
        # AMQP cannot say what is delivered and unacknowledged: unknown, not 0.
        assert (figures.delayed, figures.reserved) == (UNKNOWN, UNKNOWN)
        assert figures.consumers == 1
    else:
        assert (figures.delayed, figures.reserved) == (1, 1)


def test_status_exits_1_without_a_live_worker_for_a_queue_and_0_with_one(
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    queue = unique_queue()
    missing = manage("djworker", "status", "-Q", queue)
    assert missing.returncode == 1, missing.stderr
    assert f"no live worker for queue {queue!r}" in missing.stderr
    assert "Traceback" not in missing.stderr

    worker = worker_factory("--pool", "solo", "-Q", queue, "-n", "probe@here")
    alive = manage("djworker", "status", "-Q", queue, "--json")
    assert alive.returncode == 0, alive.stderr
    document = json.loads(alive.stdout)
    (row,) = [w for w in document["workers"] if w["hostname"] == "probe@here"]
    assert (row["state"], row["pool"], row["size"], row["queues"]) == ("online", "solo", 1, [queue])
    assert {q["name"]: q["ready"] for q in document["queues"]}[queue] == 0
    worker.stop()


def test_status_exits_3_when_the_broker_cannot_be_read_but_still_lists_workers() -> None:
    result = manage("djworker", "status", broker_url="redis://127.0.0.1:6329/0")
    assert result.returncode == 1  # no live worker comes first
    assert "workers (" in result.stdout
    assert "queues: unknown, the broker could not be read" in result.stdout
    only_workers = manage(
        "djworker", "status", "--workers-only", broker_url="redis://127.0.0.1:6329/0"
    )
    assert "queues" not in only_workers.stdout


def test_purge_without_force_refuses_when_nobody_can_confirm() -> None:
    queue = unique_queue()
    result = manage("djworker", "purge", queue)
    assert result.returncode == 2
    assert "--force" in result.stderr
    assert "Traceback" not in result.stderr


def test_purge_names_the_bad_queue_in_one_line() -> None:
    result = manage("djworker", "purge", "no spaces", "--force")
    assert result.returncode == 2
    assert "queue names are letters" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_admin_queue_page_shows_broker_figures_and_purges_only_with_permission_and_confirmation(
    every_broker,
) -> None:
    from tests.integration.test_admin_powers import staff

    purged, kept = unique_queue("purged"), unique_queue("kept")
    tasks.noop.apply_async(queue=purged)
    tasks.noop.apply_async(queue=kept)

    viewer = staff("view_brokerqueue", username="viewer")
    page = viewer.get("/admin/djworker/brokerqueue/").content.decode()
    assert f'<tr data-queue="{purged}">' in page
    assert 'type="checkbox"' not in page
    viewer.post("/admin/djworker/brokerqueue/", {"queue": [purged], "confirmed": "yes"})
    assert stats(purged).ready == 1

    purger = staff("view_brokerqueue", "purge_queue", username="purger")
    asked = purger.post("/admin/djworker/brokerqueue/", {"queue": [purged]}).content.decode()
    assert "Yes, purge" in asked
    assert stats(purged).ready == 1  # asking is not purging
    done = purger.post(
        "/admin/djworker/brokerqueue/", {"queue": [purged], "confirmed": "yes"}, follow=True
    )
    assert f"Purged 1 message(s) from {purged}." in done.content.decode()
    assert stats(purged).ready == 0
    assert stats(kept).ready == 1
