"""Lost workers: a SIGKILLed worker leaves nothing RUNNING, names are reused, online rows stay."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable

import pytest

from djworker.models import TaskResult, Worker
from tests.integration.harness import (
    QUICK_REDELIVERY,
    QUICK_REDELIVERY_ENV,
    WorkerProcess,
    unique_queue,
    wait_for,
)
from tests.integration.test_admin_powers import staff
from tests.taskapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

LOST_AFTER_S = "10"


def test_a_worker_killed_with_sigkill_leaves_no_row_running_after_the_lease_and_threshold(
    every_broker, use_broker, worker_factory: Callable[..., WorkerProcess]
) -> None:
    use_broker(every_broker, QUICK_REDELIVERY)
    queue = unique_queue()
    env = {
        "DJWORKER_TEST_WORKER_LOST_AFTER": LOST_AFTER_S,
        **QUICK_REDELIVERY_ENV,
    }
    victim_name = f"victim-{queue}@%h"
    victim = worker_factory(
        "--pool",
        "threads",
        "-c",
        "2",
        "-Q",
        queue,
        "-n",
        victim_name,
        broker_url=every_broker,
        env=env,
    )
    again = tasks.sleep.apply_async((3,), queue=queue)  # acks late: delivered again
    lost = tasks.sleep_acked_early.apply_async((60,), queue=queue)  # acked before it runs
    wait_for(lambda: again.status == lost.status == "RUNNING", what="both tasks to start")
    victim.signal(signal.SIGKILL)
    victim.wait()
    worker_factory("--pool", "threads", "-c", "2", "-Q", queue, broker_url=every_broker, env=env)

    hostname = victim_name.replace("%h", socket.gethostname())
    wait_for(
        lambda: Worker.objects.filter(hostname=hostname, state="lost").exists(),
        timeout_s=60,
        what="the killed worker to be marked lost",
    )

    def settled() -> TaskResult | None:
        row = TaskResult.objects.get(id=lost.id)
        return row if row.status != "RUNNING" or row.worker_hostname != hostname else None

    row = wait_for(settled, timeout_s=30, what="the acked task's run to be settled")
    if row.worker_hostname == hostname:
        assert (row.status, row.exception_class, row.exit_status) == (
            "FAILED",
            "WorkerLost",
            "worker lost",
        )
        assert "will not run again" in row.exception_message
    # else: Redis delivered it again (the early ack was still in the killed worker's ack
    # batch); it runs on the other worker, which is just as settled.
    # The late-acked one ran again on the other worker.
    wait_for(lambda: again.status == "SUCCESSFUL", timeout_s=60, what="the redelivered task")
    assert not TaskResult.objects.filter(status="RUNNING", worker_hostname=hostname).exists()


def test_a_restarted_worker_with_the_same_name_reuses_its_row(
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    name, queue = f"same-{unique_queue()}@%h", unique_queue()
    first = worker_factory("--pool", "solo", "-Q", queue, "-n", name)
    hostname = name.replace("%h", socket.gethostname())
    pid = Worker.objects.get(hostname=hostname).pid
    lost = tasks.sleep_acked_early.apply_async((60,), queue=queue)
    wait_for(lambda: lost.status == "RUNNING", what="the task to start")
    first.signal(signal.SIGKILL)
    first.wait()
    worker_factory("--pool", "solo", "-Q", unique_queue(), "-n", name)
    (row,) = Worker.objects.filter(hostname__startswith=hostname.split("@")[0])
    assert (row.hostname, row.state) == (hostname, "online")
    assert row.pid != pid
    # The run the killed process left is settled at once: the new one never looks lost.
    assert (lost.status, TaskResult.objects.get(id=lost.id).exception_class) == (
        "FAILED",
        "WorkerLost",
    )


def test_a_name_a_live_worker_uses_is_refused_in_one_line(
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    name = f"taken-{unique_queue()}@%n"
    worker_factory("--pool", "solo", "-Q", unique_queue(), "-n", name)
    second = worker_factory("--pool", "solo", "-Q", unique_queue(), "-n", name, wait_ready=False)
    assert second.wait() != 0
    assert "is in use by a running worker" in second.output
    assert "Traceback" not in second.output


def test_deleting_an_online_worker_row_is_refused_and_a_stopped_one_is_allowed() -> None:
    online = Worker.objects.create(hostname=f"on-{unique_queue()}", state="online")
    stopped = Worker.objects.create(hostname=f"off-{unique_queue()}", state="stopped")
    admin = staff("view_worker", "delete_worker", username="deleter")
    assert admin.get(f"/admin/djworker/worker/{online.pk}/delete/").status_code == 403
    mixed = {"action": "delete_selected", "_selected_action": [online.pk, stopped.pk]}
    assert admin.post("/admin/djworker/worker/", {**mixed, "post": "yes"}).status_code == 403
    assert Worker.objects.filter(pk__in=[online.pk, stopped.pk]).count() == 2
    only_stopped = {"action": "delete_selected", "_selected_action": [stopped.pk], "post": "yes"}
    admin.post("/admin/djworker/worker/", only_stopped)
    assert list(Worker.objects.filter(pk__in=[online.pk, stopped.pk])) == [online]
