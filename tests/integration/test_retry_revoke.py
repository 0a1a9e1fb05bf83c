"""Revoke and retry, from the command line and the admin, against real workers on every broker."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from djworker.broker import get_broker
from djworker.models import TaskResult
from djworker.queues import inspector_for
from tests.integration.harness import WorkerProcess, unique_queue, wait_for
from tests.integration.test_admin_powers import staff
from tests.taskapp import tasks
from tests.taskapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> str:
    out = StringIO()
    call_command("djworker", *args, stdout=out)
    return out.getvalue()


def row(task_id: str) -> TaskResult:
    return TaskResult.objects.get(id=task_id)


def test_a_revoked_waiting_task_never_runs_even_on_a_worker_started_after_the_revoke(
    every_broker, worker_factory: Callable[..., WorkerProcess]
) -> None:
    queue = unique_queue()
    ready = tasks.write_note.apply_async(("revoked-ready",), queue=queue)
    delayed = tasks.write_note.apply_async(("revoked-delayed",), queue=queue, countdown=2)
    output = run("revoke", ready.id, delayed.id)
    assert f"revoked {ready.id}" in output and f"revoked {delayed.id}" in output

    worker = worker_factory("--pool", "threads", "-c", "2", "-Q", queue, broker_url=every_broker)
    after = tasks.write_note.apply_async(("after",), queue=queue, countdown=3)
    wait_for(lambda: after.status == "SUCCESSFUL", timeout_s=40, what="the later task to run")
    wait_for(
        lambda: worker.output.count("not run: revoked by") == 2,
        what="both revoked messages to be refused",
    )
    assert not Note.objects.filter(text__startswith="revoked").exists()
    for task_id in (ready.id, delayed.id):
        revoked = row(task_id)
        assert (revoked.status, revoked.exception_class) == ("FAILED", "TaskRevoked")
        assert revoked.revoked_at is not None and revoked.revoked_by.endswith("(command line)")
        assert revoked.attempts == 0
    # Their messages were acknowledged, not handed back: nothing is left in the queue.
    (figures,) = inspector_for(get_broker()).stats([queue])
    assert figures.ready == 0


def test_retry_sends_a_new_run_linked_both_ways_to_the_one_it_retries(
    every_broker, worker_factory: Callable[..., WorkerProcess]
) -> None:
    queue = unique_queue()
    key = f"fixed-{queue}"
    worker_factory("--pool", "threads", "-c", "1", "-Q", queue, broker_url=every_broker)
    failed = tasks.fail_unless_note.apply_async((key,), queue=queue, priority=7)
    wait_for(lambda: failed.status == "FAILED", what="the first run to fail")
    Note.objects.create(text=key)  # the operator fixes the cause

    output = run(
        "retry", "--failed", "--task", "tests.taskapp.tasks.fail_unless_note", "--since", "1h"
    )
    old = row(failed.id)
    assert old.retried_as and f"retried {failed.id} as {old.retried_as}" in output
    wait_for(lambda: row(old.retried_as).status == "SUCCESSFUL", what="the retry to succeed")
    new = row(old.retried_as)
    assert new.retry_of == failed.id
    assert (new.args, new.queue, new.priority, new.result) == ([key], queue, 7, key)
    assert old.status == "FAILED"  # the original keeps its own outcome
    # Run again, the filter finds nothing new: a retried row is not sent twice.
    assert "no task matches" in run("retry", "--failed", "--task", old.task_name)


def test_retrying_a_task_that_no_longer_exists_is_refused_with_the_reason() -> None:
    gone = TaskResult.objects.create(
        id="gone-1", task_name="myapp.tasks.removed", queue="default", status="FAILED"
    )
    refusal = r"'myapp\.tasks\.removed' is no longer a registered task"
    with pytest.raises(CommandError, match=refusal):
        run("retry", gone.id)
    assert row(gone.id).retried_as == ""


def test_revoking_a_running_or_finished_task_is_refused_and_says_what_to_do() -> None:
    now = timezone.now()
    TaskResult.objects.create(
        id="run-1", task_name="t", queue="q", status="RUNNING", worker_hostname="w1", started_at=now
    )
    TaskResult.objects.create(id="done-1", task_name="t", queue="q", status="SUCCESSFUL")
    with pytest.raises(CommandError) as refused:
        run("revoke", "run-1", "done-1", "missing-1")
    text = str(refused.value)
    assert "task run-1 is running on w1: terminate it instead" in text
    assert "task done-1 already finished (SUCCESSFUL)" in text
    assert "no task with id 'missing-1'" in text
    assert row("run-1").status == "RUNNING"


def test_retry_and_revoke_in_the_admin_need_their_permissions() -> None:
    TaskResult.objects.create(
        id="f-1", task_name=tasks.noop.name, queue=unique_queue(), status="FAILED"
    )
    TaskResult.objects.create(
        id="r-1", task_name=tasks.noop.name, queue=unique_queue(), status="READY"
    )
    viewer = staff("view_taskresult", username="viewer")
    page = viewer.get("/admin/djworker/taskresult/")
    assert b"Retry the selected" not in page.content and b"Revoke the selected" not in page.content
    viewer.post("/admin/djworker/taskresult/", {"action": "revoke", "_selected_action": ["r-1"]})
    assert row("r-1").revoked_at is None

    operator = staff("view_taskresult", "retry_task", "revoke_task", username="operator")
    operator.post("/admin/djworker/taskresult/", {"action": "revoke", "_selected_action": ["r-1"]})
    assert row("r-1").revoked_by == "operator (admin)"
    operator.post("/admin/djworker/taskresult/", {"action": "retry", "_selected_action": ["f-1"]})
    retried = row("f-1").retried_as
    assert retried and row(retried).retry_of == "f-1"
    page = operator.get(f"/admin/djworker/taskresult/{retried}/change/")
    assert b"/admin/djworker/taskresult/f-1/change/" in page.content
