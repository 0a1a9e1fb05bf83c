"""Admin powers match their permissions, and no size escapes MAX_CONCURRENCY: through Django's
test client with users of each permission set, and against real workers."""

from __future__ import annotations

import html
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from djworker.models import ControlCommand, Worker, WorkerConfig
from djworker.models.workers import bump_revision
from tests.integration.harness import unique_queue, wait_for
from tests.integration.test_control import unique_name, wait_row
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
    profile = WorkerConfig.objects.create(name=unique_name("p"), concurrency=2, queues=queue)
    worker_factory("--config", profile.name, "-n", hostname, broker_url=redis_url)
    target = Worker.objects.get(hostname=hostname)

    command = ControlCommand.objects.create(worker=target, action="grow", argument=2**31 - 1)
    failed = wait_for(
        lambda: ControlCommand.objects.filter(pk=command.pk, status="failed").first(),
        what="the grow refused",
    )
    assert failed.message == f"grow needs N from 1 to 1000 {BOUND}; got 2147483647"

    # Written without clean(), as a script could: the worker refuses it and says why.
    WorkerConfig.objects.filter(pk=profile.pk).update(concurrency=5000)
    bump_revision(profile.pk)
    refused = wait_row(hostname, "profile refused", lambda w: "5000" in w.config_error)
    assert (
        f"--concurrency 5000 (from admin) is above the maximum pool size 1000 {BOUND}"
        in refused.config_error
    )
    wait_row(
        hostname,
        "a later heartbeat",
        lambda w: w.last_heartbeat > refused.last_heartbeat and w.pool_size == 2,
    )
    assert tasks.add.apply_async((2, 3), queue=queue).get(timeout=10) == 5


def test_runworker_refuses_a_concurrency_above_the_maximum_in_one_line() -> None:
    result = run_command("--pool", "threads", "-c", "1001", "--config", unique_name("p"))
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"CommandError: --concurrency 1001 (from cli) is above the maximum pool size 1000 {BOUND}"
    ), result.stderr


# -- custom pools ------------------------------------------------------------------------------


def test_a_worker_refuses_a_profile_pool_outside_the_allow_list_and_never_imports_it(
    worker_factory, redis_url, use_broker, tmp_path: Path
) -> None:
    use_broker(redis_url)
    marker = tmp_path / "imported"
    queue, hostname = unique_queue(), unique_name("pool")
    profile = WorkerConfig.objects.create(name=unique_name("p"), concurrency=1, queues=queue)
    worker_factory(
        "--config",
        profile.name,
        "-n",
        hostname,
        broker_url=redis_url,
        env={"DJWORKER_IMPORT_CANARY": str(marker)},
    )
    WorkerConfig.objects.filter(pk=profile.pk).update(pool=CANARY)
    bump_revision(profile.pk)
    refused = wait_row(hostname, "pool refused", lambda w: CANARY in w.config_error)
    assert "is not one of the custom pools a profile may name" in refused.config_error
    assert refused.pool == "threads"
    assert tasks.add.apply_async((1, 2), queue=queue).get(timeout=10) == 3

    started = run_command("--config", profile.name, "-n", unique_name("late"))
    assert started.returncode != 0
    assert started.stderr.strip().splitlines()[-1] == (
        f"CommandError: profile {profile.name!r}: pool {CANARY!r} is not one of the custom pools "
        "a profile may name (settings.DJWORKER['CUSTOM_POOLS']: none)"
    )
    assert not marker.exists()
