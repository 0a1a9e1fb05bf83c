"""Redis refusing the worker's password stops it at start; an outage is still waited out.

On a private redis-server started with ``--requirepass``. A refused password is not an outage:
no retry can fix it, so the worker says so in one line instead of retrying forever.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
import redis

from tests.faults.servers import PrivateRedis
from tests.integration.harness import READY, WorkerProcess, unique_queue

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    ("password", "shown", "reason"),
    [
        ("wrong-secret", ":***@", "invalid username-password pair"),
        (None, "", "Authentication required"),
    ],
)
def test_a_refused_password_stops_the_worker_at_start_in_one_line(
    password: str | None,
    shown: str,
    reason: str,
    password_redis: PrivateRedis,
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    url = password_redis.url_with_password(password)
    started = time.monotonic()
    worker = worker_factory(
        "--pool", "threads", "-Q", unique_queue(), broker_url=url, wait_ready=False
    )
    assert worker.wait(60) != 0, worker.output
    assert time.monotonic() - started < 30  # not after kombu's growing retry intervals
    redacted = f"redis://{shown}127.0.0.1:{password_redis.port}/0"
    lines = [line for line in worker.output.splitlines() if "refused the password" in line]
    assert len(lines) == 1, worker.output
    prefix = f"CommandError: the broker at {redacted} refused the password ({reason}"
    assert lines[0].startswith(prefix), lines[0]
    assert lines[0].endswith(
        "an authentication error is not retried; correct the password in the broker URL"
    )
    assert "Traceback" not in worker.output and "broker unreachable" not in worker.output
    assert "wrong-secret" not in worker.output and "right-secret" not in worker.output


def test_the_right_password_runs_tasks_after_the_server_comes_back(
    password_redis: PrivateRedis,
    use_broker: Callable[..., object],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    from tests.taskapp import tasks

    queue = unique_queue()
    password_redis.stop()
    worker = worker_factory(
        "--pool", "threads", "-Q", queue, broker_url=password_redis.url, wait_ready=False
    )
    # Connection refused is an outage: the worker waits for the server, however long.
    worker.wait_for_output("broker unreachable", timeout_s=30)
    password_redis.start()
    worker.wait_for_output(READY, timeout_s=30)
    use_broker(password_redis.url)
    assert tasks.add.apply_async((2, 3), queue=queue).get(timeout=20) == 5
    assert "refused the password" not in worker.output
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_a_password_refused_on_reconnect_is_retried_until_it_is_accepted_again(
    password_redis: PrivateRedis,
    use_broker: Callable[..., object],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    from tests.taskapp import tasks

    queue = unique_queue()
    worker = worker_factory("--pool", "threads", "-Q", queue, broker_url=password_redis.url)
    admin = redis.Redis.from_url(password_redis.url)
    try:
        # The password changes under a running worker, whose connections are then dropped.
        admin.config_set("requirepass", "rotated-secret")
        admin = redis.Redis.from_url(password_redis.url_with_password("rotated-secret"))
        admin.client_kill_filter(_type="normal", skipme=True)
        worker.wait_for_output("refused the password", timeout_s=30)
        assert worker.process is not None and worker.process.poll() is None, worker.output
        admin.config_set("requirepass", "right-secret")
        worker.wait_for_output("reconnected to the broker", timeout_s=30)
    finally:
        admin.close()
    use_broker(password_redis.url)
    assert tasks.add.apply_async((4, 5), queue=queue).get(timeout=20) == 9
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
