"""The dashboard with 50 workers and 100,000 result rows: how long the server takes to render it
(measured and reported, never asserted: timings flake on a shared machine), and a refresh whose
query count does not grow with the rows."""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from djworker.models import TaskResult, Worker
from tests.integration.test_dashboard import DASHBOARD, DATA, client_for

pytestmark = pytest.mark.django_db

WORKERS = 50
ROWS = 100_000
STATUSES = ("SUCCESSFUL", "SUCCESSFUL", "SUCCESSFUL", "FAILED")


def add_results(count: int, *, start: int = 0) -> None:
    now = timezone.now()
    TaskResult.objects.bulk_create(
        (
            TaskResult(
                id=f"{start + i:08d}-{uuid.uuid4().hex[:8]}",
                task_name=f"app.tasks.task_{i % 20}",
                queue=f"q{i % 5}",
                status=STATUSES[i % 4] if i % 2000 else "RUNNING",
                worker_hostname=f"w{i % WORKERS:02d}",
                started_at=now - timedelta(seconds=i % 3600 + 1),
                finished_at=None if i % 2000 == 0 else now - timedelta(seconds=i % 3600),
                cpu_time_s=(i % 7) / 10,
                wall_time_s=(i % 11) / 10 + 0.01,
            )
            for i in range(start, start + count)
        ),
        batch_size=5000,
    )


def copy_results(times: int) -> None:
    """Insert ``times`` copies of every result row, in one statement (each copy gets a new id).

    Far quicker than building the objects in Python, and it names every column of the model,
    so it follows the model's schema on PostgreSQL and SQLite alike.
    """
    columns = [f.column for f in TaskResult._meta.concrete_fields]
    selected = ", ".join(
        "id || '-' || n.g" if column == "id" else connection.ops.quote_name(column)
        for column in columns
    )
    table = connection.ops.quote_name(TaskResult._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n WHERE g < %s) "
            f"INSERT INTO {table} ({', '.join(map(connection.ops.quote_name, columns))}) "
            f"SELECT {selected} FROM {table} CROSS JOIN n",
            [times],
        )


def median_ms(client: Any, url: str, *, runs: int = 5) -> float:
    client.get(url)  # warm-up: templates compiled, connection open
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        assert client.get(url).status_code == 200
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


def test_fifty_workers_and_100k_results_render_with_a_refresh_whose_queries_do_not_grow(
    capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    Worker.objects.bulk_create(
        Worker(hostname=f"w{i:02d}", pool="prefork", pool_size=4, busy=i % 5, queues=f"q{i % 5}")
        for i in range(WORKERS)
    )
    client = client_for(superuser=True)

    def refresh_queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(DATA).status_code == 200
        return len(captured)

    add_results(1_000)
    few = refresh_queries()
    copy_results(ROWS // 1_000 - 1)
    assert TaskResult.objects.count() == ROWS
    many = refresh_queries()
    assert many == few, f"refresh ran {few} queries with 1,000 rows and {many} with {ROWS:,}"

    data = client.get(DATA).json()
    assert len(data["workers"]) == WORKERS and data["running_total"] == ROWS // 1_000
    page_ms = median_ms(client, DASHBOARD)
    refresh_ms = median_ms(client, DATA)
    with CaptureQueriesContext(connection) as captured:
        client.get(DASHBOARD)
    report = (
        f"dashboard with {WORKERS} workers and {ROWS:,} results: page {page_ms:.0f} ms "
        f"({len(captured)} queries), refresh {refresh_ms:.0f} ms ({many} queries); "
        "median of 5 server renders through the test client"
    )
    record_property("dashboard_page_ms", round(page_ms))
    record_property("dashboard_refresh_ms", round(refresh_ms))
    with capsys.disabled():
        print(f"\n{report}")
