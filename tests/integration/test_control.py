"""Live control of real workers: profiles saved through the ORM and the admin, autoscale,
pool restarts, control commands and the heartbeat of a busy solo worker."""

from __future__ import annotations

import re
import signal
import uuid
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from djworker.concurrency import PROFILE_POOLS
from djworker.exceptions import TaskFailed
from djworker.models import ControlCommand, TaskResult, Worker, WorkerProfile
from djworker.result import AsyncResult
from tests.integration.harness import READY, unique_queue, wait_for
from tests.taskapp import tasks
from tests.taskapp.models import Note

pytestmark = pytest.mark.django_db(transaction=True)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def row(hostname: str) -> Worker | None:
    return Worker.objects.filter(hostname=hostname).first()


def wait_row(hostname: str, what: str, predicate, timeout_s: float = 20.0) -> Worker:  # type: ignore[no-untyped-def]
    def check() -> Worker | None:
        worker = row(hostname)
        return worker if worker is not None and predicate(worker) else None

    return wait_for(check, timeout_s=timeout_s, interval_s=0.1, what=f"{hostname}: {what}")


def admin_client() -> Client:
    User.objects.create_superuser("boss", "boss@example.com", "pw")
    client = Client()
    client.login(username="boss", password="pw")
    return client


def change_form_data(profile: WorkerProfile, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        field: ("" if getattr(profile, field) is None else getattr(profile, field))
        for field in (
            "name",
            "pool",
            "concurrency",
            "autoscale_min",
            "autoscale_max",
            "autoscale_keepalive",
            "queues",
            "prefetch_multiplier",
            "time_limit",
            "soft_time_limit",
            "max_tasks_per_child",
            "max_memory_per_child",
        )
    }
    if profile.paused:
        data["paused"] = "on"
    data.update(changes)
    # The form offers the built-in pools as choices and takes a custom class in its own field.
    if data["pool"] and data["pool"] not in PROFILE_POOLS:
        data["custom_pool"], data["pool"] = data["pool"], "custom"
    data["_save"] = "Save"
    return data


def test_saving_a_profile_resizes_every_follower_but_never_a_setting_pinned_on_the_command_line(
    worker_factory, redis_url, use_broker
) -> None:
    use_broker(redis_url)
    queue = unique_queue()
    profile = WorkerProfile.objects.create(name=unique_name("p"), concurrency=2, queues=queue)
    free, pinned = unique_name("free"), unique_name("pinned")
    workers = [
        worker_factory(
            "--profile", profile.name, "-n", free, broker_url=redis_url, wait_ready=False
        ),
        worker_factory(
            "--profile",
            profile.name,
            "-n",
            pinned,
            "-c",
            "1",
            broker_url=redis_url,
            wait_ready=False,
        ),
    ]
    for worker in workers:
        worker.wait_for_output(READY, timeout_s=30)
    assert row(free).pool_size == 2  # type: ignore[union-attr]
    assert "concurrency                2                        <- admin" in workers[0].output

    profile.concurrency = 4
    profile.save()
    follower = wait_row(free, "pool of 4", lambda w: w.pool_size == 4)
    assert follower.applied_revision == profile.revision
    held = wait_row(pinned, "revision applied", lambda w: w.applied_revision == profile.revision)
    assert held.pool_size == 1
    assert held.pinned["concurrency"] == "cli"
    assert ["concurrency", 1, "cli"] in held.settings
    assert tasks.add.apply_async((2, 3), queue=queue).get(timeout=10) == 5


def test_a_profile_saved_in_the_admin_adds_a_queue_and_a_bad_one_is_refused_naming_the_field(
    worker_factory, redis_url, use_broker
) -> None:
    use_broker(redis_url)
    queue, extra = unique_queue(), unique_queue("extra")
    profile = WorkerProfile.objects.create(name=unique_name("p"), concurrency=1, queues=queue)
    hostname = unique_name("w")
    worker_factory("--profile", profile.name, "-n", hostname, broker_url=redis_url)
    client = admin_client()
    url = f"/admin/djworker/workerprofile/{profile.pk}/change/"

    refused = client.post(url, change_form_data(profile, autoscale_min=4, autoscale_max=2))
    assert refused.status_code == 200
    assert "The minimum (4) must not be above the maximum (2)" in refused.content.decode()
    refused = client.post(url, change_form_data(profile, time_limit=5, soft_time_limit=10))
    assert "must be above the soft limit" in refused.content.decode()

    saved = client.post(url, change_form_data(profile, concurrency=3, queues=f"{queue},{extra}"))
    assert saved.status_code == 302
    profile.refresh_from_db()
    # The whole revision, not its first part: a heartbeat can land between the resize and the
    # queue change.
    applied = wait_row(
        hostname, "admin save applied", lambda w: w.applied_revision == profile.revision
    )
    assert (applied.pool_size, applied.queues) == (3, f"{queue},{extra}")
    assert tasks.add.apply_async((1, 1), queue=extra).get(timeout=10) == 2
    assert LogEntry.objects.filter(object_id=str(profile.pk)).exists()

    profile.refresh_from_db()
    client.post(url, change_form_data(profile, queues=extra))
    cancelled = wait_row(hostname, "first queue cancelled", lambda w: w.queues == extra)
    assert cancelled.applied_revision == WorkerProfile.objects.get(pk=profile.pk).revision
    left = tasks.add.apply_async((2, 2), queue=queue)
    with pytest.raises(Exception, match="did not finish"):
        left.get(timeout=1.5)
    assert tasks.add.apply_async((3, 3), queue=extra).get(timeout=10) == 6


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_autoscale_grows_under_a_backlog_and_shrinks_back_after_the_keepalive(
    pool, worker_factory, redis_url, use_broker
) -> None:
    use_broker(redis_url)
    queue, hostname = unique_queue(), unique_name("auto")
    worker_factory(
        "--pool",
        pool,
        "--autoscale",
        "3,1",
        "--autoscale-keepalive",
        "2",
        "-Q",
        queue,
        "-n",
        hostname,
        "--profile",
        unique_name("p"),
        "--create-profile",
        broker_url=redis_url,
    )
    assert row(hostname).pool_size == 1  # type: ignore[union-attr]
    results = [tasks.sleep.apply_async((0.5,), queue=queue) for _ in range(9)]
    grown = wait_row(hostname, "grown to 3", lambda w: w.pool_size == 3)
    assert grown.scale_events[0]["reason"].startswith("grew 1→")
    assert all(r.get(timeout=20) == 0.5 for r in results)
    shrunk = wait_row(hostname, "back to 1", lambda w: w.pool_size == 1, timeout_s=15)
    last = shrunk.scale_events[-1]["reason"]
    assert last.startswith("shrank ") and "→1: at most " in last and "in the last 2s" in last
    page = admin_client().get(f"/admin/djworker/worker/{shrunk.pk}/change/").content.decode()
    first = shrunk.scale_events[0]
    assert f"<li>{first['at']}: {first['reason']}</li>" in page
    assert "<td>autoscale</td><td>1,3</td><td>cli (pinned)</td>" in page


@pytest.mark.parametrize(("new_pool", "new_size"), [("solo", None), ("prefork", 2), ("gevent", 20)])
def test_changing_the_pool_kind_restarts_the_pool_gracefully_and_loses_no_task(
    new_pool, new_size, worker_factory, redis_url, use_broker
) -> None:
    use_broker(redis_url)
    queue, hostname = unique_queue(), unique_name("kind")
    profile = WorkerProfile.objects.create(
        name=unique_name("p"), pool="threads", concurrency=2, queues=queue
    )
    worker_factory("--profile", profile.name, "-n", hostname, broker_url=redis_url)
    results = [tasks.sleep.apply_async((0.3,), queue=queue) for _ in range(8)]
    wait_for(lambda: TaskResult.objects.filter(status="RUNNING").exists(), what="a task running")
    profile.pool, profile.concurrency = new_pool, new_size
    profile.save()
    assert all(r.get(timeout=30) == 0.3 for r in results)
    restarted = wait_row(hostname, f"{new_pool} pool", lambda w: w.pool == new_pool)
    assert restarted.applied_revision == profile.revision
    assert (
        TaskResult.objects.filter(id__in=[r.id for r in results], status="SUCCESSFUL").count() == 8
    )


def test_a_solo_worker_running_a_long_task_keeps_its_heartbeat_and_answers_a_pause(
    worker_factory, redis_url, use_broker
) -> None:
    use_broker(redis_url)
    queue, hostname = unique_queue(), unique_name("solo")
    worker_factory(
        "--pool",
        "solo",
        "-Q",
        queue,
        "-n",
        hostname,
        "--profile",
        unique_name("p"),
        "--create-profile",
        broker_url=redis_url,
    )
    long_task = tasks.sleep.apply_async((5,), queue=queue)
    wait_for(
        lambda: TaskResult.objects.filter(id=long_task.id, status="RUNNING").exists(),
        what="the long task running",
    )
    started = timezone.now()
    command = ControlCommand.objects.create(worker=row(hostname), action="pause")
    wait_for(
        lambda: ControlCommand.objects.filter(pk=command.pk, status="done").exists(),
        timeout_s=4,
        what="the pause answered",
    )
    paused = wait_row(
        hostname, "heartbeat during the task", lambda w: w.last_heartbeat > started, timeout_s=3
    )
    assert paused.paused and paused.busy == 1
    assert TaskResult.objects.get(id=long_task.id).status == "RUNNING"
    assert long_task.get(timeout=10) == 5


def test_a_paused_profile_takes_no_new_task_until_it_is_resumed(
    worker_factory, redis_url, use_broker
) -> None:
    use_broker(redis_url)
    queue, hostname = unique_queue(), unique_name("pause")
    profile = WorkerProfile.objects.create(name=unique_name("p"), concurrency=1, queues=queue)
    worker_factory("--profile", profile.name, "-n", hostname, broker_url=redis_url)
    profile.paused = True
    profile.save()
    wait_row(hostname, "paused", lambda w: w.paused and w.applied_revision == profile.revision)
    waiting = tasks.add.apply_async((1, 2), queue=queue)
    with pytest.raises(Exception, match="did not finish"):
        waiting.get(timeout=1.5)
    profile.paused = False
    profile.save()
    assert waiting.get(timeout=10) == 3


def test_admin_actions_grow_a_worker_record_the_outcome_and_a_warm_shutdown_says_stopped(
    worker_factory, redis_url, use_broker
) -> None:
    use_broker(redis_url)
    hostname = unique_name("ctl")
    worker = worker_factory(
        "-c",
        "2",
        "-Q",
        unique_queue(),
        "-n",
        hostname,
        "--profile",
        unique_name("p"),
        "--create-profile",
        broker_url=redis_url,
    )
    client = admin_client()
    target = row(hostname)
    assert target is not None
    changelist = "/admin/djworker/worker/"
    response = client.post(
        changelist, {"action": "grow", "n": "2", "_selected_action": [target.pk]}
    )
    assert response.status_code == 302
    wait_row(hostname, "grown to 4", lambda w: w.pool_size == 4)
    command = wait_for(
        lambda: ControlCommand.objects.filter(worker=target, status="done").first(),
        what="the grow command done",
    )
    assert command.message == "grew 2→4"
    assert command.requested_by.username == "boss"
    assert LogEntry.objects.filter(
        object_id=str(target.pk), change_message="Control: grow the pool by 2"
    ).exists()
    page = client.get(f"{changelist}{target.pk}/change/").content.decode()
    assert "<td>boss</td><td>grow 2</td><td>done: grew 2→4</td>" in page
    assert "<td>concurrency</td><td>2</td><td>cli (pinned)</td>" in page

    client.post(changelist, {"action": "shutdown", "_selected_action": [target.pk]})
    assert worker.wait(timeout_s=15) == 0
    assert row(hostname).current_state == "stopped"  # type: ignore[union-attr]


def test_only_staff_with_the_control_permission_see_the_controls() -> None:
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_worker"))
    Worker.objects.create(hostname="seen-host")
    client = Client()
    client.login(username="viewer", password="pw")
    page = client.get("/admin/djworker/worker/").content.decode()
    assert "seen-host" in page and "Grow the pool by N" not in page
    assert client.get("/admin/djworker/workerprofile/").status_code == 403

    viewer.user_permissions.add(Permission.objects.get(codename="control_worker"))
    assert "Grow the pool by N" in client.get("/admin/djworker/worker/").content.decode()


def test_a_worker_whose_heartbeat_is_three_intervals_old_shows_as_stale() -> None:
    now = timezone.now()
    Worker.objects.create(
        hostname="host-quiet", heartbeat_interval_s=5, last_heartbeat=now - timedelta(seconds=16)
    )
    Worker.objects.create(
        hostname="host-late", heartbeat_interval_s=5, last_heartbeat=now - timedelta(seconds=14)
    )
    Worker.objects.create(
        hostname="host-gone",
        heartbeat_interval_s=5,
        last_heartbeat=now - timedelta(seconds=99),
        state="stopped",
    )
    states = {w.hostname: w.current_state for w in Worker.objects.all()}
    assert states == {"host-quiet": "stale", "host-late": "online", "host-gone": "stopped"}
    for state in ("online", "stale", "stopped"):
        assert [w.hostname for w in Worker.objects.in_state(state)] == [
            host for host, current in states.items() if current == state
        ]
    page = admin_client().get("/admin/djworker/worker/?current_state=stale").content.decode()
    listed = {host for host in states if f">{host}<" in page}
    assert listed == {"host-quiet"}
    with pytest.raises(ValueError, match="unknown worker state 'asleep'"):
        Worker.objects.in_state("asleep")


def test_warm_shutdown_by_signal_also_marks_the_worker_stopped(worker_factory, redis_url) -> None:
    hostname = unique_name("sig")
    worker = worker_factory(
        "-Q",
        unique_queue(),
        "-n",
        hostname,
        "--profile",
        unique_name("p"),
        "--create-profile",
        broker_url=redis_url,
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert row(hostname).state == "stopped"  # type: ignore[union-attr]


def test_admin_actions_on_two_workers_at_once_pause_resume_shrink_and_restart_both(
    worker_factory, redis_url, use_broker
) -> None:
    use_broker(redis_url)
    queue = unique_queue()
    hostnames = [unique_name("pair"), unique_name("pair")]
    for hostname in hostnames:
        worker_factory(
            "-c", "2", "-Q", queue, "-n", hostname,
            "--profile", unique_name("p"), "--create-profile",
            broker_url=redis_url, wait_ready=False,
        )  # fmt: skip
    for hostname in hostnames:
        wait_row(hostname, "online", lambda w: w.pool_size == 2, timeout_s=30)
    client = admin_client()
    selected = [row(h).pk for h in hostnames]  # type: ignore[union-attr]

    def act(action: str, expected: str, **extra: str) -> None:
        last = ControlCommand.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        response = client.post(
            "/admin/djworker/worker/", {"action": action, "_selected_action": selected, **extra}
        )
        assert response.status_code == 302
        sent = ControlCommand.objects.filter(pk__gt=last, action=action)
        assert sent.count() == 2
        wait_for(lambda: not sent.exclude(status="done").exists(), what=f"{action} done on both")
        messages = list(sent.values_list("message", flat=True))
        assert all(expected in message for message in messages), messages

    act("pause", "paused")
    for hostname in hostnames:
        wait_row(hostname, "paused", lambda w: w.paused)
    waiting = tasks.add.apply_async((1, 1), queue=queue)
    with pytest.raises(Exception, match="did not finish"):
        waiting.get(timeout=1.5)

    act("resume", "resumed")
    assert waiting.get(timeout=10) == 2
    for hostname in hostnames:
        wait_row(hostname, "resumed", lambda w: not w.paused)

    act("shrink", "shrank 2→1", n="1")
    for hostname in hostnames:
        wait_row(hostname, "one slot", lambda w: w.pool_size == 1)

    act("restart_pool", "pool restarted")
    assert tasks.add.apply_async((2, 2), queue=queue).get(timeout=10) == 4


def test_restarting_a_prefork_pool_starts_the_process_again_with_a_clean_fork_server(
    worker_factory, redis_url, use_broker
) -> None:
    use_broker(redis_url)
    queue, hostname = unique_queue(), unique_name("fresh")
    worker = worker_factory(
        "--pool", "prefork", "-c", "1", "-Q", queue, "-n", hostname,
        "--profile", unique_name("p"), "--create-profile", broker_url=redis_url,
    )  # fmt: skip
    assert worker.process is not None
    first_child = tasks.whoami.apply_async(queue=queue).get(timeout=20)["pid"]
    running = tasks.sleep.apply_async((1,), queue=queue)
    wait_for(lambda: TaskResult.objects.filter(id=running.id, status="RUNNING").exists())
    command = ControlCommand.objects.create(worker=row(hostname), action="restart_pool")
    done = wait_for(
        lambda: ControlCommand.objects.filter(pk=command.pk, status="done").first(),
        what="the restart command done",
    )
    assert "starting the worker process again" in done.message
    assert running.get(timeout=20) == 1  # the running task finished first
    worker.wait_for_output("starting again for the prefork pool")
    again = tasks.whoami.apply_async(queue=queue).get(timeout=30)
    assert again["pid"] != first_child
    assert row(hostname).pid == worker.process.pid  # type: ignore[union-attr]
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    closed = re.findall(r"(\d+) database connection\(s\) inherited by them", worker.output)
    assert closed == ["0", "0"], worker.output  # the pool before the restart, and after it


def test_a_running_task_is_terminated_from_the_admin_and_recorded_failed(
    worker_factory, redis_url, use_broker
) -> None:
    use_broker(redis_url)
    queue, hostname = unique_queue(), unique_name("term")
    worker_factory(
        "--pool", "prefork", "-c", "1", "-Q", queue, "-n", hostname, broker_url=redis_url
    )
    running = tasks.sleep_then_note_once.apply_async((60, f"term-{hostname}"), queue=queue)
    wait_for(lambda: Note.objects.filter(text=f"term-{hostname}").exists(), what="the task")
    client = admin_client()
    response = client.post(
        "/admin/djworker/taskresult/", {"action": "terminate", "_selected_action": [running.id]}
    )
    assert response.status_code == 302
    command = wait_for(
        lambda: ControlCommand.objects.filter(task_id=running.id, status="done").first(),
        what="the terminate command done",
    )
    assert command.requested_by.username == "boss" and command.worker.hostname == hostname
    page = client.get(f"/admin/djworker/worker/{command.worker.pk}/change/").content.decode()
    assert f"<td>boss</td><td>terminate {running.id}</td><td>done: terminated task" in page
    with pytest.raises(TaskFailed, match="Terminated"):
        running.get(timeout=10)
    assert tasks.add.apply_async((2, 2), queue=queue).get(timeout=20) == 4
    with pytest.raises(ValueError, match="is SUCCESSFUL; only a RUNNING task can be terminated"):
        AsyncResult(TaskResult.objects.filter(status="SUCCESSFUL").first().id).terminate()  # type: ignore[union-attr]


def test_a_pool_that_cannot_terminate_says_so_in_the_command_outcome(
    worker_factory, redis_url, use_broker
) -> None:
    use_broker(redis_url)
    queue, hostname = unique_queue(), unique_name("noterm")
    worker_factory(
        "--pool", "threads", "-c", "1", "-Q", queue, "-n", hostname, broker_url=redis_url
    )
    running = tasks.sleep_then_note_once.apply_async((3, f"noterm-{hostname}"), queue=queue)
    wait_for(lambda: Note.objects.filter(text=f"noterm-{hostname}").exists(), what="the task")
    command = running.terminate()
    wait_for(
        lambda: ControlCommand.objects.filter(pk=command.pk, status="failed").exists(),
        what="the command refused",
    )
    command.refresh_from_db()
    assert "the threads pool cannot terminate a running task" in command.message
    assert running.get(timeout=10) == f"noterm-{hostname}"
