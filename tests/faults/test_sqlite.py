"""SQLite as the only database: workers start and stop cleanly while other processes write.

SQLite has one write lock per file. A worker started while producers publish, or stopped while
its own threads still write results, must wait for that lock (or retry) rather than die with
``database is locked``. These tests need the test database to be SQLite; run them with

    DATABASE_URL=sqlite:////tmp/djworker/db.sqlite3 \\
    DJWORKER_SQLITE_TEST_NAME=/tmp/djworker/test.sqlite3 pytest tests/faults/test_sqlite.py
"""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest
from django.db import connection

from tests.faults.conftest import ExecutionLog
from tests.faults.producer import ProducerProcess
from tests.integration.harness import WorkerProcess, unique_queue, wait_for

pytestmark = [
    pytest.mark.faults,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        "connection.vendor != 'sqlite'",
        reason="SQLite's single write lock is what these tests exercise; run them with "
        "DATABASE_URL=sqlite:///... and DJWORKER_SQLITE_TEST_NAME (see the module docstring)",
    ),
]

STARTS = 20
PRODUCERS = 4


def ran_in(log: ExecutionLog, pid: int) -> int:
    return sum(1 for _, run_pid in log.runs() if run_pid == pid)


def crash_summary(output: str) -> str:
    """The worker's own frames of its last traceback and the error, for a readable failure."""
    trace = output[output.rfind("Traceback (most recent call last)") :]
    lines = trace.splitlines()
    kept = [line for line in lines if "/djworker/" in line or "Error" in line]
    retries = output.count("found the database busy")
    return "\n".join([*kept[-12:], f"(busy retries logged before: {retries})"])


def exited(worker: WorkerProcess) -> bool:
    assert worker.process is not None
    return worker.process.poll() is not None


def test_a_worker_started_while_four_producers_publish_never_crashes(
    worker_factory: Callable[..., WorkerProcess],
    producer_factory: Callable[..., ProducerProcess],
    execution_log: ExecutionLog,
) -> None:
    assert connection.vendor == "sqlite"
    queue = unique_queue()
    producers = [producer_factory(queue, f"p{n}-", 0) for n in range(PRODUCERS)]
    crashes: list[str] = []
    for start in range(STARTS):
        worker = worker_factory(
            "-c",
            "2",
            "-Q",
            queue,
            "--hostname",
            f"start{start}",
            wait_ready=False,
            env=execution_log.env,
        )
        assert worker.process is not None
        wait_for(
            lambda w=worker: " ready\n" in w.output or exited(w),
            timeout_s=60,
            what=f"start {start} to be ready or exit",
        )
        if worker.process.poll() is None:
            # Ready is not enough: it must also claim, run and settle tasks under the load.
            pid = worker.process.pid
            wait_for(
                lambda w=worker, p=pid: ran_in(execution_log, p) >= 2 or exited(w),
                timeout_s=60,
                what=f"start {start} to run tasks",
            )
            if worker.process.poll() is None:
                worker.signal(signal.SIGTERM)
        returncode = worker.wait(timeout_s=60)
        if returncode != 0:
            crashes.append(f"start {start} exited {returncode}:\n{crash_summary(worker.output)}")
    published = sum(producer.stop() for producer in producers)
    assert published > 0
    assert not crashes, f"{len(crashes)} of {STARTS} starts crashed:\n" + "\n".join(crashes)


def test_a_warm_stop_of_a_busy_worker_hands_unstarted_tasks_back_at_once(
    worker_factory: Callable[..., WorkerProcess],
    execution_log: ExecutionLog,
) -> None:
    """Each round stops a worker in full flow: tasks finishing and writing their results while
    the worker hands its claimed, unstarted messages back.

    The running ones finish once; the claimed ones go back to the queue at once (the visibility
    timeout is an hour, so a message left leased would not come back within the test).
    """
    from tests.taskapp import fault_tasks

    rounds, slots = 4, 8
    queue = unique_queue()
    keys = [f"w{i}" for i in range(400)]
    for key in keys:
        fault_tasks.run.apply_async((key, 0.2), queue=queue)
    for round_ in range(rounds):
        worker = worker_factory(
            "-c", str(slots), "-Q", queue, "--hostname", f"stop{round_}", env=execution_log.env
        )
        assert worker.process is not None
        pid = worker.process.pid
        wait_for(
            lambda p=pid: ran_in(execution_log, p) >= 3 * slots,
            timeout_s=60,
            what=f"round {round_}: the worker in full flow",
        )
        worker.signal(signal.SIGTERM)
        returncode = worker.wait(timeout_s=60)
        assert returncode == 0, f"round {round_}: warm stop exited {returncode}:\n{worker.output}"
    assert execution_log.duplicated() == {}
    worker_factory("-c", "8", "-Q", queue, "--hostname", "drain", env=execution_log.env)
    wait_for(
        lambda: not execution_log.lost(keys),
        timeout_s=120,
        what="every handed-back task to run",
    )
    assert execution_log.duplicated() == {}
