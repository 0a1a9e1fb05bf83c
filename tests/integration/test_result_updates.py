"""The per-run UPDATEs of ``result_updates``: the values the ORM would store, on any vendor."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from djworker import message, result_store, result_updates
from djworker.models import TaskResult, TaskStatus

pytestmark = pytest.mark.django_db


def stored(task_id: str) -> TaskResult:
    envelope = message.build(
        task_id=task_id, task_name="t", args=[], kwargs={}, queue="q", priority=0
    )
    result_store.record_enqueued(envelope)
    return TaskResult.objects.get(id=task_id)


@pytest.mark.parametrize("value", [{"a": [1, 2.5, "é"]}, [None, True], "", 0, "text with ' and \\"])
def test_the_final_write_stores_a_result_as_the_orm_would(value: object) -> None:
    stored("u-1")
    finished = timezone.now()
    changed = result_updates.update(
        "default",
        "u-1",
        {"status": TaskStatus.SUCCESSFUL, "result": value, "finished_at": finished},
    )
    assert changed == 1
    row = TaskResult.objects.get(id="u-1")
    assert (row.status, row.result, row.finished_at) == ("SUCCESSFUL", value, finished)


def test_none_is_sql_null_as_in_update_and_a_missing_row_changes_nothing() -> None:
    stored("u-2")
    assert result_updates.update("default", "u-2", {"result": None, "started_at": None}) == 1
    assert TaskResult.objects.filter(id="u-2", result__isnull=True).exists()
    assert result_updates.update("default", "nobody", {"result": 1}) == 0


@pytest.mark.parametrize("returning", [True, False], ids=["returning", "read-back"])
def test_counting_adds_a_run_keeps_a_floor_and_refuses_a_revoked_row(
    returning: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not returning:
        # The way of a vendor whose UPDATE cannot return the count: it is read back.
        monkeypatch.setattr(result_updates, "RETURNING_VENDORS", ())
        monkeypatch.setattr(result_updates, "_statements", {})
    stored("u-3")
    fields = {"status": TaskStatus.RUNNING, "worker_hostname": "w"}
    count = result_updates.update_counting
    assert count("default", "u-3", fields, at_least=1, relaxed=True) == 1
    assert count("default", "u-3", fields, at_least=5, relaxed=False) == 5
    assert count("default", "u-3", fields, at_least=1, relaxed=False) == 6
    row = TaskResult.objects.get(id="u-3")
    assert (row.status, row.worker_hostname, row.attempts, row.deliveries) == ("RUNNING", "w", 3, 6)
    TaskResult.objects.filter(id="u-3").update(revoked_at=timezone.now() - timedelta(seconds=1))
    assert count("default", "u-3", fields, at_least=1, relaxed=True) is None
    assert count("default", "missing", fields, at_least=1, relaxed=True) is None
    assert TaskResult.objects.get(id="u-3").deliveries == 6


def test_a_statement_is_built_once_per_vendor_and_columns_not_per_connection() -> None:
    stored("u-4")
    result_updates.update("default", "u-4", {"worker_hostname": "a"})
    built = dict(result_updates._statements)
    result_updates.update("default", "u-4", {"worker_hostname": "b"})
    assert result_updates._statements == built
    assert any(key[0] == connection.vendor for key in built)
