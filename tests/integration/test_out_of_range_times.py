"""Rows holding times outside the range a message may carry are repaired, so readers work again."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client

from djworker.models import TaskResult
from djworker.result import AsyncResult

pytestmark = pytest.mark.django_db(transaction=True)

repair = importlib.import_module("djworker.migrations.0009_times_in_range").repair


@pytest.mark.skipif(connection.vendor != "postgresql", reason="only PostgreSQL stored such times")
def test_a_row_stored_with_a_time_out_of_range_is_readable_after_the_repair_migration(
    admin_client: Client,
) -> None:
    TaskResult.objects.create(id="early", task_name="app.tasks.add")
    TaskResult.objects.create(id="late", task_name="app.tasks.add")
    with connection.cursor() as cursor:
        # As earlier versions let PostgreSQL store them: as sent, with their offsets.
        cursor.execute(
            "UPDATE djworker_taskresult SET enqueued_at = %s, run_after = %s WHERE id = 'early'",
            ["0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00+14:00"],
        )
        cursor.execute(
            "UPDATE djworker_taskresult SET finished_at = %s WHERE id = 'late'",
            ["9999-12-31T23:59:59-14:00"],
        )
    with pytest.raises(Exception, match=r"out of range|too small|too large"):
        list(TaskResult.objects.all())

    with connection.schema_editor() as editor:
        repair(apps, editor)

    assert AsyncResult("early").status == "READY"
    assert AsyncResult("late").status == "READY"
    assert TaskResult.objects.get(id="early").run_after is None
    assert admin_client.get("/admin/djworker/taskresult/").status_code == 200
