"""Result expiry: exactly the expired rows go, in batches, while workers keep writing; the
workers sweep one at a time across the cluster; the cleanup command."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from djworker import expiry
from djworker.models import ControlCommand, MaintenanceLease, TaskResult, Worker
from djworker.models.maintenance import take_lease
from tests.integration.harness import WorkerProcess, unique_queue, wait_for
from tests.taskapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

HOUR = 3600.0


def make_rows(prefix: str) -> dict[str, set[str]]:
    """Rows on both sides of a one-hour expiry: which must go, which must stay."""
    now = timezone.now()
    old, recent = now - timedelta(hours=2), now - timedelta(minutes=10)
    expired = [
        TaskResult(
            id=f"{prefix}-old-{i}",
            task_name="t",
            queue="q",
            finished_at=old,
            status="SUCCESSFUL" if i % 2 else "FAILED",
        )
        for i in range(expiry.BATCH_ROWS * 2 + 17)  # several batches
    ]
    kept = [
        TaskResult(
            id=f"{prefix}-fresh", task_name="t", queue="q", status="FAILED", finished_at=recent
        ),
        TaskResult(id=f"{prefix}-ready", task_name="t", queue="q", status="READY", enqueued_at=old),
        TaskResult(
            id=f"{prefix}-running", task_name="t", queue="q", status="RUNNING", started_at=old
        ),
        # Revoked long ago, but its countdown message has not arrived yet: its row must stay.
        TaskResult(
            id=f"{prefix}-revoked",
            task_name="t",
            queue="q",
            status="FAILED",
            finished_at=old,
            revoked_at=old,
            run_after=now + timedelta(days=1),
        ),
    ]
    TaskResult.objects.bulk_create(expired + kept)
    worker = Worker.objects.create(
        hostname=f"{prefix}-gone",
        state="stopped",
        scale_events=[
            {"at": old.isoformat(), "from": 1, "to": 2, "reason": "old"},
            {"at": recent.isoformat(), "from": 2, "to": 1, "reason": "recent"},
        ],
    )
    ControlCommand.objects.create(worker=worker, action="pause", status="done", finished_at=old)
    ControlCommand.objects.create(worker=worker, action="resume", status="done", finished_at=recent)
    return {"expired": {r.id for r in expired}, "kept": {r.id for r in kept}}


def test_workers_delete_exactly_the_expired_rows_while_they_keep_writing(
    every_broker, worker_factory: Callable[..., WorkerProcess]
) -> None:
    rows = make_rows(unique_queue("exp"))
    queue = unique_queue()
    env = {"DJWORKER_TEST_RESULT_EXPIRES": str(HOUR), "DJWORKER_TEST_RESULT_CLEANUP_INTERVAL": "1"}
    worker_factory("--pool", "threads", "-c", "2", "-Q", queue, broker_url=every_broker, env=env)
    written = [tasks.add.apply_async((i, i), queue=queue) for i in range(40)]

    wait_for(
        lambda: not TaskResult.objects.filter(id__in=rows["expired"]).exists(),
        timeout_s=60,
        what="the worker to delete the expired results",
    )
    wait_for(lambda: all(r.status == "SUCCESSFUL" for r in written), what="the tasks to finish")
    assert (
        set(TaskResult.objects.filter(id__in=rows["kept"]).values_list("id", flat=True))
        == rows["kept"]
    )
    assert TaskResult.objects.filter(id__in=[r.id for r in written]).count() == 40
    wait_for(
        lambda: ControlCommand.objects.filter(action="pause").count() == 0, what="old command gone"
    )
    assert ControlCommand.objects.filter(action="resume").count() == 1
    (gone,) = Worker.objects.filter(state="stopped", hostname__endswith="-gone")
    assert [e["reason"] for e in gone.scale_events] == ["recent"]
    lease = MaintenanceLease.objects.get(name=expiry.LEASE_NAME)
    assert lease.holder and "results=" in lease.last_outcome


def test_one_worker_at_a_time_holds_the_expiry_lease() -> None:
    now = timezone.now()
    assert take_lease("lease", "a", hold_s=60, now=now)
    assert not take_lease("lease", "b", hold_s=60, now=now + timedelta(seconds=30))
    assert take_lease("lease", "a", hold_s=60, now=now + timedelta(seconds=30))  # its own again
    assert take_lease("lease", "b", hold_s=60, now=now + timedelta(seconds=91))


def test_the_cleanup_command_counts_on_a_dry_run_then_deletes_only_what_expired(settings) -> None:
    rows = make_rows("cmd")
    settings.DJWORKER = {**settings.DJWORKER, "RESULT_EXPIRES": timedelta(hours=1)}
    out = StringIO()
    call_command("djworker", "cleanup", "--dry-run", stdout=out)
    assert (
        f"would delete {len(rows['expired'])} result(s), 1 control command(s) and 1 autoscale"
        in out.getvalue()
    )
    assert TaskResult.objects.filter(id__in=rows["expired"]).count() == len(rows["expired"])

    call_command("djworker", "cleanup", stdout=out)
    assert not TaskResult.objects.filter(id__in=rows["expired"]).exists()
    assert TaskResult.objects.filter(id__in=rows["kept"]).count() == len(rows["kept"])

    settings.DJWORKER = {**settings.DJWORKER, "RESULT_EXPIRES": None}
    kept = StringIO()
    call_command("djworker", "cleanup", stdout=kept)
    assert "kept forever" in kept.getvalue()
