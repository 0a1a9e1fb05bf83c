"""Admin powers match their permissions, and no size escapes MAX_CONCURRENCY: through Django's
test client with users of each permission set, and against real workers."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from django.utils import timezone

from djworker import message, result_store
from djworker.models import ControlCommand, TaskResult, Worker, WorkerProfile
from djworker.models.workers import bump_revision
from tests.integration.harness import unique_queue, wait_for
from tests.integration.test_control import change_form_data, unique_name, wait_row
from tests.integration.test_runworker import run_command
from tests.taskapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

BOUND = "(settings.DJWORKER['MAX_CONCURRENCY'])"
CANARY = "tests.taskapp.exits_on_import:Pool"


def staff(*codenames: str, username: str = "staff") -> Client:
    """A logged-in staff user holding exactly these djworker permissions."""
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    assert user.user_permissions.count() == len(codenames), codenames
    client = Client()
    client.login(username=username, password="pw")
    return client


# -- sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "shown"),
    [("abc", "'abc'"), ("0", "'0'"), ("2147483648", "'2147483648'"), ("1001", "'1001'")],
)
def test_an_invalid_n_in_the_admin_says_why_and_sends_nothing(n: str, shown: str) -> None:
    worker = Worker.objects.create(hostname=unique_name("w"))
    client = staff("view_worker", "control_worker")
    page = client.post(
        "/admin/djworker/worker/",
        {"action": "grow", "n": n, "_selected_action": [worker.pk]},
        follow=True,
    )
    assert page.status_code == 200
    body = html.unescape(page.content.decode())
    assert f"Nothing sent: N must be a whole number from 1 to 1000 {BOUND}; got {shown}" in body
    assert "No action selected" not in body
    assert not ControlCommand.objects.exists()


def test_a_worker_refuses_a_grow_or_a_profile_above_the_maximum_and_keeps_its_heartbeat(
    worker_factory, redis_url, use_broker
) -> None:
    use_broker(redis_url)
    queue, hostname = unique_queue(), unique_name("big")
    profile = WorkerProfile.objects.create(name=unique_name("p"), concurrency=2, queues=queue)
    worker_factory("--profile", profile.name, "-n", hostname, broker_url=redis_url)
    target = Worker.objects.get(hostname=hostname)

    command = ControlCommand.objects.create(worker=target, action="grow", argument=2**31 - 1)
    failed = wait_for(
        lambda: ControlCommand.objects.filter(pk=command.pk, status="failed").first(),
        what="the grow refused",
    )
    assert failed.message == f"grow needs N from 1 to 1000 {BOUND}; got 2147483647"

    # Written without clean(), as a script could: the worker refuses it and says why.
    WorkerProfile.objects.filter(pk=profile.pk).update(concurrency=5000)
    bump_revision(profile.pk)
    refused = wait_row(hostname, "profile refused", lambda w: "5000" in w.profile_error)
    assert (
        f"--concurrency 5000 (from admin) is above the maximum pool size 1000 {BOUND}"
        in refused.profile_error
    )
    wait_row(
        hostname,
        "a later heartbeat",
        lambda w: w.last_heartbeat > refused.last_heartbeat and w.pool_size == 2,
    )
    assert tasks.add.apply_async((2, 3), queue=queue).get(timeout=10) == 5


def test_runworker_refuses_a_concurrency_above_the_maximum_in_one_line() -> None:
    result = run_command(
        "--pool", "threads", "-c", "1001", "--profile", unique_name("p"), "--create-profile"
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"CommandError: --concurrency 1001 (from cli) is above the maximum pool size 1000 {BOUND}"
    ), result.stderr


def test_a_prefetch_count_above_what_amqp_can_carry_is_capped_and_tasks_still_run(
    worker_factory, amqp_url, use_broker
) -> None:
    use_broker(amqp_url)
    queue = unique_queue()
    worker_factory(
        "-c", "1", "--prefetch-multiplier", "70000", "-Q", queue, "-n", unique_name("pf"),
        "--profile", unique_name("p"), "--create-profile", broker_url=amqp_url,
    )  # fmt: skip
    assert tasks.add.apply_async((4, 4), queue=queue).get(timeout=15) == 8


# -- custom pools ------------------------------------------------------------------------------


def start_canary_worker(
    worker_factory: Any, redis_url: str, tmp_path: Path
) -> tuple[WorkerProfile, str, Path]:
    """A threads worker of 1 slot following a fresh profile; the file that says whether it
    imported the module no profile may name."""
    marker = tmp_path / "imported"
    hostname = unique_name("w")
    profile = WorkerProfile.objects.create(
        name=unique_name("p"), concurrency=1, queues=unique_queue()
    )
    worker_factory(
        "--profile",
        profile.name,
        "-n",
        hostname,
        broker_url=redis_url,
        env={"DJWORKER_IMPORT_CANARY": str(marker)},
    )
    return profile, hostname, marker


def test_a_worker_refuses_a_profile_pool_outside_the_allow_list_and_never_imports_it(
    worker_factory, redis_url, use_broker, tmp_path: Path
) -> None:
    use_broker(redis_url)
    profile, hostname, marker = start_canary_worker(worker_factory, redis_url, tmp_path)
    queue = profile.queues
    WorkerProfile.objects.filter(pk=profile.pk).update(pool=CANARY)
    bump_revision(profile.pk)
    refused = wait_row(hostname, "pool refused", lambda w: CANARY in w.profile_error)
    assert "is not one of the custom pools a profile may name" in refused.profile_error
    assert refused.pool == "threads"
    assert tasks.add.apply_async((1, 2), queue=queue).get(timeout=10) == 3

    started = run_command("--profile", profile.name, "-n", unique_name("late"))
    assert started.returncode != 0
    assert started.stderr.strip().splitlines()[-1] == (
        f"CommandError: profile {profile.name!r}: pool {CANARY!r} is not one of the custom pools "
        "a profile may name (settings.DJWORKER['CUSTOM_POOLS']: none)"
    )
    assert not marker.exists()


# -- profiles: pausing and the pool kind act like control commands ------------------------------


def test_a_profile_editor_without_the_control_permission_cannot_pause_or_switch_the_pool(
    worker_factory, redis_url, use_broker, tmp_path: Path
) -> None:
    use_broker(redis_url)
    profile, hostname, marker = start_canary_worker(worker_factory, redis_url, tmp_path)
    queue = profile.queues
    client = staff("view_workerprofile", "change_workerprofile")
    url = f"/admin/djworker/workerprofile/{profile.pk}/change/"
    form = client.get(url).content.decode()
    assert 'name="concurrency"' in form
    assert 'name="paused"' not in form and 'name="pool"' not in form

    data = change_form_data(profile, concurrency=2, paused="on", pool=CANARY)
    assert client.post(url, data).status_code == 302
    profile.refresh_from_db()
    assert (profile.concurrency, profile.paused, profile.pool) == (2, False, "")
    applied = wait_row(hostname, "size 2", lambda w: w.applied_revision == profile.revision)
    assert applied.pool_size == 2 and not applied.paused and applied.pool == "threads"
    assert tasks.add.apply_async((2, 2), queue=queue).get(timeout=10) == 4
    assert not marker.exists()


def test_with_the_control_permission_a_profile_may_pause_and_change_to_a_built_in_pool() -> None:
    profile = WorkerProfile.objects.create(name=unique_name("p"))
    client = staff("view_workerprofile", "change_workerprofile", "control_worker")
    url = f"/admin/djworker/workerprofile/{profile.pk}/change/"
    saved = client.post(url, change_form_data(profile, paused="on", pool="prefork"))
    assert saved.status_code == 302
    profile.refresh_from_db()
    assert profile.paused and profile.pool == "prefork"


@override_settings(DJWORKER={"CUSTOM_POOLS": ["example_project.pools:ExecutorPool"]})
def test_a_custom_pool_needs_its_own_permission_and_the_allow_list() -> None:
    profile = WorkerProfile.objects.create(name=unique_name("p"))
    url = f"/admin/djworker/workerprofile/{profile.pk}/change/"
    custom = "example_project.pools:ExecutorPool"

    controller = staff("view_workerprofile", "change_workerprofile", "control_worker")
    refused = html.unescape(
        controller.post(url, change_form_data(profile, pool=custom)).content.decode()
    )
    assert (
        f"Choosing a custom pool class ('{custom}') needs the permission "
        "'djworker.choose_custom_pool'; choose one of solo, threads, prefork" in refused
    )

    chooser = staff(
        "view_workerprofile",
        "change_workerprofile",
        "control_worker",
        "choose_custom_pool",
        username="chooser",
    )
    refused = html.unescape(
        chooser.post(url, change_form_data(profile, pool=CANARY)).content.decode()
    )
    assert f"Pool '{CANARY}' is not one of the custom pools a profile may name" in refused
    assert chooser.post(url, change_form_data(profile, pool=custom)).status_code == 302
    profile.refresh_from_db()
    assert profile.pool == custom
    # Someone without the permission may still edit other fields of that profile.
    assert controller.post(url, change_form_data(profile, concurrency=3)).status_code == 302
    profile.refresh_from_db()
    assert (profile.pool, profile.concurrency) == (custom, 3)


def test_without_the_control_permission_no_control_action_is_sent() -> None:
    worker = Worker.objects.create(hostname=unique_name("w"))
    viewer = staff("view_worker", "view_taskresult", "view_workerprofile", "change_workerprofile")
    for action in ("pause", "grow", "restart_pool", "shutdown"):
        viewer.post(
            "/admin/djworker/worker/", {"action": action, "n": "1", "_selected_action": [worker.pk]}
        )
    assert not ControlCommand.objects.exists()


# -- task arguments and results ------------------------------------------------------------------


def make_result() -> TaskResult:
    return TaskResult.objects.create(
        id=unique_name("r"),
        task_name="app.tasks.charge",
        args=["4111-1111-1111-1111"],
        kwargs={"cvv": "737"},
        status="FAILED",
        result={"token": "tok_secret"},
        queue="default",
        exception_class="CardDeclined",
        exception_message="card 4111-1111-1111-1111 declined",
        traceback="Traceback (most recent call last):\nCardDeclined: card 4111-1111-1111-1111",
    )


def test_viewing_results_alone_hides_arguments_results_and_error_details() -> None:
    row = make_result()
    viewer = staff("view_taskresult")
    page = html.unescape(
        viewer.get(f"/admin/djworker/taskresult/{row.id}/change/").content.decode()
    )
    assert page.count(row.id) >= 1 and "CardDeclined" in page
    assert "4111" not in page and "737" not in page and "tok_secret" not in page
    assert (
        "Hidden: they need the permission 'djworker.view_task_arguments' (Can see task "
        "arguments, results and error details)." in page
    )
    assert "4111" not in viewer.get("/admin/djworker/taskresult/").content.decode()

    reader = staff("view_taskresult", "view_task_arguments", username="reader")
    page = html.unescape(
        reader.get(f"/admin/djworker/taskresult/{row.id}/change/").content.decode()
    )
    assert "4111-1111-1111-1111" in page and '"737"' in page and "tok_secret" in page
    assert "card 4111-1111-1111-1111 declined" in page and "Hidden:" not in page


def test_a_task_with_redact_args_never_stores_its_arguments_but_runs_with_them(
    worker_factory, redis_url, use_broker
) -> None:
    use_broker(redis_url)
    queue = unique_queue()
    worker_factory("-Q", queue, "-n", unique_name("redact"), broker_url=redis_url)
    called = tasks.check_secret.apply_async(("hunter2",), {"pin": 1000}, queue=queue)
    assert called.get(timeout=10) == 1007
    row = TaskResult.objects.get(id=called.id)
    assert (row.args, row.kwargs) == (["[redacted]"], {"pin": "[redacted]"})
    page = html.unescape(
        staff("view_taskresult", "view_task_arguments")
        .get(f"/admin/djworker/taskresult/{row.id}/change/")
        .content.decode()
    )
    assert "hunter2" not in page and "[redacted]" in page


def test_a_row_the_worker_inserts_for_a_redacted_task_is_redacted_too() -> None:
    envelope = message.build(
        task_id=unique_name("t"),
        task_name=tasks.check_secret.name,
        args=["hunter2"],
        kwargs={"pin": 1},
        queue="default",
        priority=0,
    )
    result_store.record_started(envelope, hostname="w", started_at=timezone.now())
    row = TaskResult.objects.get(id=envelope["id"])
    assert (row.args, row.kwargs) == (["[redacted]"], {"pin": "[redacted]"})
