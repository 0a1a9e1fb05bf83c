"""The Prometheus metrics view: protected, written by prometheus-client, and the same from any
web process while several real workers run tasks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client, override_settings

from tests.integration.harness import ROOT, WorkerProcess, database_url_for_workers, wait_for
from tests.integration.test_dashboard import client_for
from tests.taskapp import tasks

pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/djworker/metrics"
TOKEN = "s3cret-token-for-prometheus"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape_in_another_process() -> str:
    """The same URL answered by a second web process (a new interpreter on the same database)."""
    code = (
        "import django; django.setup()\n"
        "from django.conf import settings\n"
        f"settings.DJWORKER = {{**settings.DJWORKER, 'METRICS_TOKEN': {TOKEN!r}}}\n"
        "from django.test import Client\n"
        f"r = Client().get({URL!r}, HTTP_AUTHORIZATION='Bearer {TOKEN}')\n"
        "assert r.status_code == 200, r.status_code\n"
        "print(r.content.decode())\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url_for_workers(),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@override_settings(DJWORKER={"METRICS_TOKEN": TOKEN})
def test_metrics_need_a_staff_session_or_the_bearer_token() -> None:
    refused = Client().get(URL)
    assert refused.status_code == 403
    assert refused["WWW-Authenticate"].startswith("Bearer")
    assert b"METRICS_TOKEN" in refused.content
    assert Client().get(URL, HTTP_AUTHORIZATION="Bearer wrong-token-wrong-token").status_code == 403
    assert client_for(staff=False).get(URL).status_code == 403

    by_token = Client().get(URL, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert by_token.status_code == 200
    assert by_token["Content-Type"].startswith("text/plain; version=")
    assert client_for().get(URL).status_code == 200


def test_the_metrics_add_up_over_two_real_workers_and_agree_from_a_second_web_process(
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    worker_factory("-P", "threads", "-c", "2", "-Q", "m1", "-n", "metrics-a")
    worker_factory("-P", "threads", "-c", "1", "-Q", "m2", "-n", "metrics-b")
    for _ in range(3):
        tasks.add.apply_async((1, 2), queue="m1")
    tasks.add.apply_async((1, 2), queue="m2")
    tasks.fail.apply_async(("boom",), queue="m2")
    tasks.add.apply_async((1, 2), queue="m2", countdown=3600)
    from djworker.models import TaskResult

    wait_for(
        lambda: TaskResult.objects.filter(status__in=("SUCCESSFUL", "FAILED")).count() == 5,
        timeout_s=60,
        what="5 finished tasks",
    )

    def settled() -> Any:
        found = samples(client_for().get(URL).content.decode())
        processed = [
            v for (n, _), v in found.items() if n == "djworker_worker_tasks_processed_total"
        ]
        return found if sum(processed) == 5 else None

    found = wait_for(settled, timeout_s=30, what="both heartbeats counting 5 tasks")
    add, fail = "tests.taskapp.tasks.add", "tests.taskapp.tasks.fail"
    assert found[("djworker_worker_up", (("worker", "metrics-a"),))] == 1
    assert found[("djworker_pool_slots", (("pool", "threads"), ("worker", "metrics-a")))] == 2
    assert (
        found[("djworker_tasks_finished_total", (("status", "SUCCESSFUL"), ("task_name", add)))]
        == 4
    )
    assert (
        found[("djworker_tasks_finished_total", (("status", "FAILED"), ("task_name", fail)))] == 1
    )
    assert found[("djworker_task_duration_seconds_count", (("task_name", add),))] == 4
    assert (
        found[("djworker_task_duration_seconds_bucket", (("le", "+Inf"), ("task_name", add)))] == 4
    )
    assert found[("djworker_queue_messages", (("queue", "m2"), ("state", "delayed")))] == 1
    assert found[("djworker_broker_readable", ())] == 1

    other = samples(scrape_in_another_process())
    stable = (
        "djworker_tasks_finished_total",
        "djworker_task_duration_seconds",
        "djworker_worker_tasks",
    )
    assert {k: v for k, v in other.items() if k[0].startswith(stable)} == {
        k: v for k, v in found.items() if k[0].startswith(stable)
    }


def test_without_prometheus_client_the_view_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    answer = client_for().get(URL)
    assert answer.status_code == 501
    assert answer.content.decode().strip() == (
        'the metrics view needs prometheus-client: pip install "djworker[metrics]"'
    )
