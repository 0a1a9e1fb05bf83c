"""How the result row counts the runs of one message, for the delivery cap."""

from __future__ import annotations

import pytest
from django.utils import timezone

from djworker import message, result_store
from djworker.execution import lost_outcome
from djworker.job import Job, OutcomeKind
from djworker.models import TaskResult
from tests.taskapp import fault_tasks

pytestmark = pytest.mark.django_db


def envelope_for(task_id: str, attempt: int = 0) -> dict[str, object]:
    return message.build(
        task_id=task_id,
        task_name=fault_tasks.kill_own_process.name,
        args=["k"],
        kwargs={},
        queue="q",
        priority=0,
        attempt=attempt,
    )


def start(envelope: dict[str, object], *, uncounted_before: bool = False) -> int:
    return result_store.record_started(
        envelope, hostname="w", started_at=timezone.now(), uncounted_before=uncounted_before
    )


def test_each_start_of_the_same_message_counts_one_delivery_in_the_same_write() -> None:
    envelope = envelope_for("d-1")
    result_store.record_enqueued(envelope)
    assert [start(envelope) for _ in range(3)] == [1, 2, 3]
    row = TaskResult.objects.get(id="d-1")
    assert (row.status, row.attempts, row.deliveries) == ("RUNNING", 3, 3)


def test_a_retry_is_a_new_message_whose_deliveries_count_from_one_again() -> None:
    envelope = envelope_for("d-2")
    result_store.record_enqueued(envelope)
    start(envelope)
    start(envelope)
    result_store.record_failure(
        envelope,
        exception_class="ConnectionError",
        exception_message="down",
        will_retry=True,
        new_message=True,
    )
    assert start(envelope_for("d-2", attempt=1)) == 1
    row = TaskResult.objects.get(id="d-2")
    assert (row.attempts, row.deliveries) == (3, 1)


def test_a_redelivery_whose_earlier_run_was_not_counted_counts_at_least_two() -> None:
    assert start(envelope_for("d-3")) == 1
    assert start(envelope_for("d-4"), uncounted_before=True) == 2  # the worker inserts the row
    assert TaskResult.objects.get(id="d-4").deliveries == 2
    # A row written when the uncounted run was lost (READY, 0 deliveries), then counted on.
    lost = envelope_for("d-8")
    result_store.record_failure(
        lost, exception_class="WorkerLost", exception_message="died", will_retry=True
    )
    assert start(lost, uncounted_before=True) == 2
    assert start(lost, uncounted_before=True) == 3


def job_for(task_id: str, cap: int) -> Job:
    return Job(
        token=1,
        envelope=envelope_for(task_id),
        hostname="w",
        max_deliveries=cap,
        max_deliveries_from="worker max_deliveries, from default",
    )


def test_a_lost_run_below_the_cap_goes_back_to_the_broker() -> None:
    envelope = envelope_for("d-5")
    start(envelope)
    outcome = lost_outcome(job_for("d-5", cap=2), reason="died", exit_status="signal 9 (SIGKILL)")
    assert (outcome.kind, outcome.requeue, outcome.reject) == (OutcomeKind.LOST, True, False)
    assert TaskResult.objects.get(id="d-5").status == "READY"


def test_the_lost_run_that_spends_the_cap_fails_the_task_and_rejects_the_message() -> None:
    envelope = envelope_for("d-6")
    start(envelope)
    start(envelope)
    outcome = lost_outcome(job_for("d-6", cap=2), reason="died", exit_status="signal 9 (SIGKILL)")
    assert (outcome.kind, outcome.requeue, outcome.reject) == (OutcomeKind.FAILED, False, True)
    row = TaskResult.objects.get(id="d-6")
    assert (row.status, row.exception_class, row.exit_status) == (
        "FAILED",
        "DeliveryLimitExceeded",
        "signal 9 (SIGKILL)",
    )
    assert row.exception_message == (
        "the run died on delivery 2, the last of max_deliveries=2 "
        "(worker max_deliveries, from default)"
    )


def test_with_no_cap_a_lost_run_always_goes_back() -> None:
    envelope = envelope_for("d-7")
    for _ in range(20):
        start(envelope)
    outcome = lost_outcome(job_for("d-7", cap=0), reason="died", exit_status="signal 9 (SIGKILL)")
    assert outcome.requeue
