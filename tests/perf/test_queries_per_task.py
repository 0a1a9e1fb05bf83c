"""Database queries and PostgreSQL sessions per task, counted by the server, on every pool.

The default path: every task stores its result, ``CONN_MAX_AGE = 0`` (Django's default). A
real worker runs no-op tasks against a private PostgreSQL cluster that logs each statement and
each new session (``tests/perf/server_log.py``); nothing is timed. After a warm-up (the
worker's own sessions are open, every pool process has run a task), a batch of tasks runs, and
the stretch of the server log it wrote must show:

* no session opened by the worker for its bookkeeping: its own writes reuse its connections
  whatever ``CONN_MAX_AGE`` says, and a no-op task's code opens none (on ``django://`` the
  transport's lease keeper may open one now and then, bounded by time, never per task);
* two statements on the result table per task: the RUNNING mark (which also counts the run and
  checks for a revocation) and the final write, each a single statement in autocommit;
* in all, at most ``STATEMENTS_PER_TASK`` statements per task for the broker.

An idle ``django://`` worker opens no session either, and holds a bounded number of them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.servers import PrivatePostgres
from tests.integration.harness import ROOT, WorkerProcess, unique_queue
from tests.perf import server_log

pytestmark = pytest.mark.integration

WARM_UP_TASKS = 30
TASKS = 200
#: the worker's statements per task, all of them (result writes and broker), by broker; what
#: the worker's periodic work adds (heartbeats, idle polls) while the batch runs is included
STATEMENTS_PER_TASK = {"redis": 2.5, "django": 6.0}
#: pools and their concurrency
POOLS = [("solo", 1), ("threads", 4), ("prefork", 2)]
RESULT_TABLE = "djworker_taskresult"
QUEUE_TABLE = "djworker_queuemessage"


@pytest.fixture(scope="module")
def logged_database() -> Iterator[tuple[PrivatePostgres, str]]:
    """A private cluster logging every statement and session, with one migrated database."""
    server = PrivatePostgres(Path(tempfile.mkdtemp(prefix="djworker-perf-pg-")))
    try:
        server.create().start()
        for name, value in server_log.SERVER_SETTINGS.items():
            server.sql(f"ALTER SYSTEM SET {name} = '{value}'")
        server.sql("SELECT pg_reload_conf()")
        server.sql("CREATE DATABASE perf")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=ROOT,
            env={**_django_env(server.url("perf"))},
            check=True,
            capture_output=True,
            timeout=300,
        )
        yield server, server.url("perf")
    finally:
        server.drop()


def _django_env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url,
        "CONN_MAX_AGE": "0",
    }


def _publish_and_wait(
    database_url: str, broker_url: str, queue: str, count: int, *options: str
) -> None:
    """Publish ``count`` no-ops (see ``publish.py`` for ``options``) from another process and
    wait until every result is stored."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "tests.perf.publish"),
            *(f"--queue={queue}", f"--count={count}", *options),
        ],
        cwd=ROOT,
        env={**_django_env(database_url), "DJWORKER_BROKER_URL": broker_url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"publisher failed:\n{done.stdout}\n{done.stderr}"


def _heartbeat_counted(database_url: str, processed: int) -> None:
    """Wait until the worker's control tick has written a heartbeat counting ``processed`` runs.

    The control thread opens its own session at its first tick; a warm-up shorter than a tick
    would otherwise leave that one-time opening inside the measured stretch.
    """
    psycopg = pytest.importorskip("psycopg")
    deadline = time.monotonic() + 60
    with psycopg.connect(database_url, autocommit=True) as observer:
        while time.monotonic() < deadline:
            row = observer.execute("SELECT max(processed) FROM djworker_worker").fetchone()
            if row and row[0] is not None and row[0] >= processed:
                return
            time.sleep(0.2)
    raise AssertionError(f"no heartbeat counted {processed} runs within 60 s")


def _start_worker(
    worker_factory: Callable[..., WorkerProcess],
    pool: str,
    concurrency: int,
    queue: str,
    broker_url: str,
    database_url: str,
    application: str,
) -> WorkerProcess:
    """A worker on the logged database whose sessions carry ``application`` as their name."""
    return worker_factory(
        "--pool",
        pool,
        "-c",
        str(concurrency),
        "-Q",
        queue,
        broker_url=broker_url,
        settings="tests.settings_prefork",
        env={
            "DATABASE_URL": database_url,
            "CONN_MAX_AGE": "0",
            "DJWORKER_TEST_APP_NAME": application,
            "DJWORKER_LOG_LEVEL": "WARNING",
        },
    )


@pytest.mark.parametrize("broker", ["redis", "django"])
@pytest.mark.parametrize(("pool", "concurrency"), POOLS)
def test_a_task_opens_no_session_and_makes_two_result_writes(
    broker: str,
    pool: str,
    concurrency: int,
    logged_database: tuple[PrivatePostgres, str],
    worker_factory: Callable[..., WorkerProcess],
    request: pytest.FixtureRequest,
) -> None:
    server, database_url = logged_database
    broker_url = request.getfixturevalue("redis_url") if broker == "redis" else "django://"
    application = f"djw-perf-{uuid.uuid4().hex[:8]}"
    queue = unique_queue("perf")
    worker = _start_worker(
        worker_factory, pool, concurrency, queue, broker_url, database_url, application
    )
    log_path = server.directory / "postgres.log"
    _publish_and_wait(database_url, broker_url, queue, WARM_UP_TASKS)
    _heartbeat_counted(database_url, WARM_UP_TASKS)
    start = log_path.stat().st_size
    _publish_and_wait(database_url, broker_url, queue, TASKS)
    end = log_path.stat().st_size
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output
    activity = server_log.read(log_path, start=start, end=end, application=application)

    result_writes = activity.touching(RESULT_TABLE)
    statements = len(activity.statements)
    summary = (
        f"{broker} {pool} -c {concurrency}: {len(activity.sessions_opened)} session(s) opened, "
        f"{len(result_writes) / TASKS:.2f} result-table statements and "
        f"{statements / TASKS:.2f} statements in all per task, over {TASKS} tasks"
    )
    print(summary)
    # What the new sessions ran, up to the worker's exit: the first thing to look at.
    later = server_log.read(
        log_path, start=start, end=log_path.stat().st_size, application=application
    )
    ran = {
        session: [sql for each, sql in later.statements if each == session]
        for session in activity.sessions_opened
    }
    shown = "\n".join(f"{session}: {sql}" for session, sqls in ran.items() for sql in sqls)
    # Only the django:// transport's lease keeper may open one: it closes its session after a
    # second without use and opens one again for an ack flush the consumer left to it. That
    # is bounded by time, not by tasks; anything else is the worker's and must be none.
    others = [
        session
        for session, sqls in ran.items()
        if not sqls or any(QUEUE_TABLE not in sql for sql in sqls)
    ]
    assert not others, f"{summary}; they ran:\n{shown}"
    assert len(activity.sessions_opened) <= TASKS // 20, f"{summary}; they ran:\n{shown}"
    # Two per task; the control tick may read the table a few times while the batch runs.
    assert 2 * TASKS <= len(result_writes) <= 2 * TASKS + 10, f"{summary}\n" + "\n".join(
        sorted(set(result_writes))
    )
    assert statements <= STATEMENTS_PER_TASK[broker] * TASKS, summary


#: what an idle django:// worker holds besides one connection per slot: the consumer's, which
#: also carries the transport's LISTEN, and the control tick's. The lease keeper closes its own
#: a second after its last write.
DJANGO_WORKER_SESSIONS_BEYOND_SLOTS = 2
IDLE_S = 3.0


def test_an_idle_django_worker_opens_no_session_and_holds_a_bounded_number(
    logged_database: tuple[PrivatePostgres, str],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    psycopg = pytest.importorskip("psycopg")
    server, database_url = logged_database
    application = f"djw-perf-{uuid.uuid4().hex[:8]}"
    queue = unique_queue("perf")
    slots = 4
    worker = _start_worker(
        worker_factory, "threads", slots, queue, "django://", database_url, application
    )
    _publish_and_wait(database_url, "django://", queue, WARM_UP_TASKS)
    # The control tick opens its session at its first tick, which a quick warm-up can precede.
    _heartbeat_counted(database_url, WARM_UP_TASKS)
    log_path = server.directory / "postgres.log"
    start = log_path.stat().st_size
    time.sleep(IDLE_S)
    end = log_path.stat().st_size
    with psycopg.connect(database_url, autocommit=True) as observer:
        held = observer.execute(
            "SELECT pid, left(query, 80) FROM pg_stat_activity WHERE application_name = %s",
            [application],
        ).fetchall()
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output
    idle = server_log.read(log_path, start=start, end=end, application=application)
    ran = "\n".join(
        f"{session}: {sql}" for session, sql in idle.statements if session in idle.sessions_opened
    )
    assert not idle.sessions_opened, (
        f"sessions opened in {IDLE_S} s idle: {idle.sessions_opened}; they ran:\n{ran}"
    )
    shown = "\n".join(f"{pid}: {query}" for pid, query in held)
    assert len(held) <= slots + DJANGO_WORKER_SESSIONS_BEYOND_SLOTS, shown


#: long enough that the lease keeper's backstop writes the previous task's ack while the solo
#: pool runs the next, and that a session it closed after a second unused would be reopened
LONG_TASK_S = 1.3


def test_long_tasks_on_the_solo_pool_open_no_session_per_task(
    logged_database: tuple[PrivatePostgres, str],
    worker_factory: Callable[..., WorkerProcess],
) -> None:
    """The solo pool runs each task on the consumer's thread, so the ack of one is written by
    the lease keeper while the next runs: its session stays open while messages are held."""
    server, database_url = logged_database
    application = f"djw-perf-{uuid.uuid4().hex[:8]}"
    queue = unique_queue("perf")
    worker = _start_worker(worker_factory, "solo", 1, queue, "django://", database_url, application)
    _publish_and_wait(database_url, "django://", queue, WARM_UP_TASKS)
    _heartbeat_counted(database_url, WARM_UP_TASKS)
    time.sleep(2)  # the lease keeper's session, if the warm-up opened one, is closed by now
    log_path = server.directory / "postgres.log"
    start = log_path.stat().st_size
    _publish_and_wait(database_url, "django://", queue, 4, f"--sleep={LONG_TASK_S}")
    end = log_path.stat().st_size
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output
    run = server_log.read(log_path, start=start, end=end, application=application)
    assert len(run.sessions_opened) <= 1, f"sessions opened by 4 tasks: {run.sessions_opened}"
