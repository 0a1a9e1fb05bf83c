"""What a pool records when it had to stop a slot mid-task."""

from __future__ import annotations

import pytest

from djworker import message
from djworker.execution import lost_outcome
from djworker.job import Job, OutcomeKind
from djworker.models import TaskResult
from tests.taskapp import tasks

pytestmark = pytest.mark.django_db


def job_for(task_id: str) -> Job:
    envelope = message.build(
        task_id=task_id, task_name=tasks.sleep.name, args=[1], kwargs={}, queue="q", priority=0
    )
    return Job(token=1, envelope=envelope, hostname="w")


def test_a_run_stopped_while_running_is_recorded_failed_with_its_exit_status() -> None:
    TaskResult.objects.create(id="t-1", task_name=tasks.sleep.name, queue="q", status="RUNNING")
    outcome = lost_outcome(job_for("t-1"), reason="child died", exit_status="signal 9 (SIGKILL)")
    row = TaskResult.objects.get(id="t-1")
    assert outcome.kind is OutcomeKind.LOST and not outcome.requeue
    assert (row.status, row.exception_class, row.exit_status) == (
        "FAILED",
        "WorkerLost",
        "signal 9 (SIGKILL)",
    )


def test_a_run_that_stored_its_result_just_before_its_slot_was_stopped_keeps_it() -> None:
    TaskResult.objects.create(
        id="t-2", task_name=tasks.sleep.name, queue="q", status="SUCCESSFUL", result=1
    )
    outcome = lost_outcome(
        job_for("t-2"), reason="hard time limit", exception_class="TimeLimitExceeded"
    )
    row = TaskResult.objects.get(id="t-2")
    assert outcome.kind is OutcomeKind.SUCCEEDED
    assert (row.status, row.result, row.exception_class) == ("SUCCESSFUL", 1, "")
