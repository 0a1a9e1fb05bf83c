"""The runworker command's edges: banner, refusals, JSON-only arguments."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from djworker.models import TaskResult
from tests.integration.harness import ROOT, database_url_for_workers, unique_queue
from tests.taskapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def run_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "runworker", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url_for_workers(),
        },
    )


def test_the_banner_shows_broker_without_password_pool_concurrency_queues_and_tasks(
    worker_factory, amqp_url
) -> None:
    queue = unique_queue()
    worker = worker_factory(
        "--pool", "threads", "-c", "3", "-Q", f"{queue},other", broker_url=amqp_url
    )
    out = worker.output
    # Worked out here from the configured URL (any user, password and virtual host), not by
    # djworker's own redaction, so a redaction that drops or garbles a part fails.
    credentials = urlsplit(amqp_url)
    assert credentials.password, f"the AMQP test URL needs a password to hide: {amqp_url}"
    userinfo = f"{credentials.username}:{credentials.password}@"
    redacted = amqp_url.replace(userinfo, f"{credentials.username}:***@", 1)
    assert redacted in out and userinfo not in out
    assert "pool:        threads" in out
    assert "concurrency: 3" in out
    assert f"queues:      {queue}, other" in out
    assert f". {tasks.add.name}" in out
    assert "concurrency                3                        <- cli" in out
    worker.signal(signal.SIGINT)
    assert worker.wait() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--pool", "bogus"],
            "unknown pool 'bogus'; choose one of solo, threads, prefork, processes, gevent, "
            "eventlet, custom",
        ),
        (["--pool", "threads", "-c", "0"], "--concurrency expects a positive integer; got '0'"),
        (
            ["--pool", "solo", "--autoscale", "1,3"],
            "--autoscale is not available with the solo pool: it cannot change its size while "
            "running; use one of threads, prefork, gevent or eventlet",
        ),
        (
            ["--pool", "threads", "--max-tasks-per-child", "5"],
            "--max-tasks-per-child and --max-memory-per-child need the prefork pool",
        ),
        (["--pool", "no.such.module:Pool"], "cannot import pool module 'no.such.module'"),
    ],
)
def test_bad_options_are_refused_with_a_message_naming_the_choices(
    args: list[str], message: str
) -> None:
    result = run_command(*args)
    assert result.returncode != 0
    assert message in result.stderr


def test_arguments_json_cannot_carry_raise_type_error_and_nothing_is_stored_or_published(
    use_broker, redis_url
) -> None:
    import redis

    broker = use_broker(redis_url)
    queue = unique_queue()
    with pytest.raises(TypeError, match="JSON"):
        tasks.add.apply_async((object(), 1), queue=queue)
    assert TaskResult.objects.count() == 0
    client = redis.Redis.from_url(redis_url)
    assert not client.keys(f"{queue}*")
    broker.close()
