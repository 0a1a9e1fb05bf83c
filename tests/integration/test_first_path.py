"""A new user's first commands: refusals in one line with a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from djworker.models import WorkerProfile
from tests.integration.harness import ROOT, database_url_for_workers, unique_queue
from tests.taskapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def runworker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "runworker", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url_for_workers(),
            **(env or {}),
        },
    )


def refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    """Refused with ``message`` on one line of stderr, a non-zero exit and no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert any(message in line for line in result.stderr.splitlines()), result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--time-limit", "nan"], "--time-limit expects a positive number of seconds"),
        (["--time-limit", "inf"], "--time-limit expects a positive number of seconds"),
        (["--profile", "c" * 150], "--profile expects a profile name of at most 100"),
        (["--profile", "<script>"], "--profile expects a profile name"),
        (["-n", "n" * 300], "--hostname expects a worker name of at most 255"),
        (["-Q", "q" * 201], "queue names have at most 200 characters"),
        (["--broker", "nonsense://x"], "unknown transport 'nonsense'"),
        (["--pool", "threads", "--time-limit", "2"], "the threads pool cannot enforce a hard"),
        (["--profile", "no-such-profile"], "no worker profile named 'no-such-profile'"),
    ],
)
def test_a_bad_value_on_the_command_line_is_refused_in_one_line(
    args: list[str], message: str
) -> None:
    refused(runworker(*args), message)


def test_a_bad_transport_option_in_settings_stops_the_worker_in_one_line() -> None:
    # The example project's settings read the transport options from this variable.
    env = {"DJWORKER_BROKER_TRANSPORT_OPTIONS": '{"visibility_timeout": -1}'}
    refused(
        runworker(env=env),
        "settings.DJWORKER['BROKER_TRANSPORT_OPTIONS']['visibility_timeout'] expects a number",
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('{"visibility_timeout": 5', "not JSON (Expecting ',' delimiter"),
        ("[1, 2]", "a JSON array, not an object"),
        ('"redis://user:hunter2@host/0"', "a JSON string, not an object"),
    ],
)
def test_malformed_json_for_the_transport_options_variable_is_refused_in_one_line(
    value: str, problem: str
) -> None:
    result = runworker(env={"DJWORKER_BROKER_TRANSPORT_OPTIONS": value})
    shown = value.replace(":hunter2@", ":***@")
    refused(
        result,
        "DJWORKER_BROKER_TRANSPORT_OPTIONS expects a JSON object of transport options, like "
        f'{{"visibility_timeout": 3600}}; got {shown!r}: {problem}',
    )
    assert "hunter2" not in result.stdout + result.stderr


def test_a_wrong_amqp_password_is_refused_in_one_line(amqp_url: str) -> None:
    wrong = amqp_url.replace("guest:guest@", "guest:wrong-secret@")
    result = runworker("--broker", wrong)
    refused(result, "refused the connection: AccessRefused")
    assert "wrong-secret" not in result.stdout + result.stderr


def test_a_missing_amqp_vhost_is_refused_in_one_line(amqp_url: str) -> None:
    missing = amqp_url.rsplit("/", 1)[0] + f"/no-such-vhost-{uuid.uuid4().hex[:6]}"
    refused(runworker("--broker", missing), "refused the connection: NotAllowed")


def test_a_profile_is_created_only_when_asked(worker_factory, redis_url) -> None:  # type: ignore[no-untyped-def]
    WorkerProfile.objects.create(name="existing-profile")
    name = f"new-{uuid.uuid4().hex[:8]}"
    result = runworker("--profile", name, "--broker", redis_url)
    refused(result, "existing profiles: ")
    assert "existing-profile" in result.stderr and "--create-profile" in result.stderr
    assert not WorkerProfile.objects.filter(name=name).exists()

    worker = worker_factory(
        "--profile", name, "--create-profile", "-Q", unique_queue(), broker_url=redis_url
    )
    assert WorkerProfile.objects.filter(name=name).exists()
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_the_banner_says_which_limits_the_pool_enforces(worker_factory, redis_url) -> None:  # type: ignore[no-untyped-def]
    threads = worker_factory("--pool", "threads", "-Q", unique_queue(), broker_url=redis_url)
    assert (
        "limits:      this pool enforces soft time limit; not hard time limit, "
        "max tasks/memory per child" in threads.output
    )
    prefork = worker_factory(
        "--pool", "prefork", "-c", "1", "-Q", unique_queue(), broker_url=redis_url
    )
    assert (
        "limits:      this pool enforces soft time limit, hard time limit, "
        "max tasks/memory per child" in prefork.output
    )
    assert "does not enforce" not in prefork.output


def test_a_calls_hard_time_limit_on_the_threads_pool_is_warned_about_once_per_task(  # type: ignore[no-untyped-def]
    worker_factory, redis_url, use_broker
) -> None:
    use_broker(redis_url)
    queue = unique_queue()
    worker = worker_factory("--pool", "threads", "-c", "2", "-Q", queue, broker_url=redis_url)
    first = tasks.add.apply_async((1, 2), queue=queue, time_limit=7.5, soft_time_limit=5)
    second = tasks.add.apply_async((3, 4), queue=queue, time_limit=9)
    # The task runs without the limit; the soft limit, which threads enforce, is not warned about.
    assert first.get(timeout=20) == 3 and second.get(timeout=20) == 7
    warning = (
        f"task={tasks.add.name} id={first.id} time_limit=7.5s of this call is not enforced: the "
        "threads pool cannot stop the task at its hard time limit, so the task runs without it "
        "(the prefork, gevent or eventlet pool can); said once per task"
    )
    assert warning in worker.output
    assert worker.output.count("of this call is not enforced") == 1
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_a_project_without_auth_and_contenttypes_is_told_to_add_them(tmp_path: Path) -> None:
    (tmp_path / "bare_settings.py").write_text(
        "SECRET_KEY = 'x'\nINSTALLED_APPS = ['djworker']\nUSE_TZ = True\n"
        "DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': ':memory:'}}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "django", "check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bare_settings",
            "PYTHONPATH": f"{tmp_path}:{ROOT}",
        },
    )
    assert result.returncode != 0
    assert (
        "(djworker.E002) djworker needs 'django.contrib.auth' and 'django.contrib.contenttypes' "
        "in INSTALLED_APPS" in result.stderr
    )


def test_a_newline_in_an_exception_message_cannot_forge_a_log_line(
    worker_factory, redis_url, use_broker
) -> None:  # type: ignore[no-untyped-def]
    use_broker(redis_url)
    queue = unique_queue()
    worker = worker_factory("-Q", queue, broker_url=redis_url)
    forged = "[2026-01-01 00:00:00,000 INFO/MainProcess] djworker.worker: FORGED"
    result = tasks.fail.apply_async((f"boom\n{forged}\x1b[31m",), queue=queue)
    worker.wait_for_output("state=FAILED", timeout_s=30)
    assert result.status == "FAILED"
    lines = worker.output.splitlines()
    assert not any(line.startswith(forged) for line in lines), worker.output
    assert "\x1b" not in worker.output
    assert any("boom\\n[2026-01-01" in line for line in lines), worker.output


def test_every_password_of_a_failover_url_is_hidden_in_the_banner_and_the_worker_row(
    worker_factory, amqp_url
) -> None:  # type: ignore[no-untyped-def]
    from djworker.models import Worker

    second = amqp_url.replace("guest:guest@", "guest:second-secret@")
    hostname = f"failover-{uuid.uuid4().hex[:8]}"
    worker = worker_factory("-Q", unique_queue(), "-n", hostname, broker_url=f"{amqp_url};{second}")
    row = Worker.objects.get(hostname=hostname)
    shown = dict((field, value) for field, value, _ in row.settings)["broker_url"]
    assert shown.count("guest:***@") == 2, shown
    assert "second-secret" not in worker.output and "second-secret" not in str(row.settings)
    assert "guest:guest@" not in worker.output
