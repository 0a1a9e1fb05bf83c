"""Database connections under the prefork pool, on the real PostgreSQL.

Each worker gets its own ``application_name`` (tests/settings_prefork.py), so
``pg_stat_activity`` shows exactly the sessions that one worker and its children hold.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid

import pytest
from django.db import connection, connections

from djworker import db
from djworker.execution import TaskExecutor
from djworker.models import TaskResult
from tests.integration.harness import unique_queue, wait_for
from tests.taskapp import prefork_tasks, tasks

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _require_postgres() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("these claims are about PostgreSQL sessions")


def _sessions(app_name: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            [connection.settings_dict["NAME"], app_name],
        )
        return int(cursor.fetchone()[0])


def _forks(output: str) -> tuple[int, int]:
    """(pool processes started, database connections they inherited), from the worker's log."""
    found = re.search(
        r"prefork pool closed: (\d+) pool process\(es\) started, (\d+) database "
        r"connection\(s\) inherited by them",
        output,
    )
    assert found, f"no 'prefork pool closed' line in the worker's log:\n{output}"
    return int(found[1]), int(found[2])


def _start(worker_factory, redis_url, *args: str, env: dict[str, str] | None = None):
    app_name = f"djw-{uuid.uuid4().hex[:8]}"
    queue = unique_queue("prefork")
    worker = worker_factory(
        "--pool",
        "prefork",
        "-Q",
        queue,
        *args,
        broker_url=redis_url,
        settings="tests.settings_prefork",
        env={"DJWORKER_TEST_APP_NAME": app_name, **(env or {})},
    )
    return worker, queue, app_name


def test_a_child_discards_inherited_connections_without_ending_the_parents_session():
    _require_postgres()
    db.track_connections()
    connection.ensure_connection()
    backend_before = _backend_pid()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            db.discard_inherited()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _backend_pid() == backend_before  # same session, still usable


def test_a_polite_close_in_a_child_would_end_the_parents_session():
    """The control for the test above: it shows what discard_inherited prevents."""
    _require_postgres()
    connection.ensure_connection()
    raw = connection.connection
    pid = os.fork()
    if pid == 0:
        try:
            raw.close()  # psycopg sends Terminate on the shared socket
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    time.sleep(0.2)
    with pytest.raises(Exception):  # noqa: B017 - the driver's error class varies with timing
        raw.execute("SELECT 1")
    connection.connection = None  # let Django open a fresh one for the rest of the test


def test_a_child_discards_connections_of_other_parent_threads_without_touching_them():
    _require_postgres()
    db.track_connections()
    opened = threading.Event()
    release = threading.Event()
    seen: dict[str, int] = {}

    def other_thread() -> None:
        seen["before"] = _backend_pid()
        opened.set()
        release.wait(10)
        seen["after"] = _backend_pid()
        connections.close_all()

    thread = threading.Thread(target=other_thread)
    thread.start()
    opened.wait(10)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            if db.discard_inherited() < 1:  # the other thread's connection must be found
                code = 2
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    release.set()
    thread.join(10)
    assert os.waitstatus_to_exitcode(status) == 0
    assert seen["after"] == seen["before"]


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def test_a_thousand_orm_tasks_succeed_with_recycled_children_and_bounded_connections(
    worker_factory, redis_url, use_broker
):
    _require_postgres()
    use_broker(redis_url)
    worker, queue, app_name = _start(
        worker_factory, redis_url, "-c", "4", "--max-tasks-per-child", "5"
    )
    for i in range(1000):
        prefork_tasks.orm_round_trip.apply_async((i,), queue=queue)
    peak = 0

    def all_done() -> bool:
        nonlocal peak
        peak = max(peak, _sessions(app_name))
        return TaskResult.objects.filter(status="SUCCESSFUL").count() == 1000

    wait_for(all_done, timeout_s=120, interval_s=0.02, what="1,000 successful tasks")
    # Per child, its own connection for the result writes (kept open) and, while an ORM task
    # runs, the task's (closed after it, CONN_MAX_AGE=0); plus the parent's control tick.
    assert 1 <= peak <= 2 * 4 + 1, f"{peak} sessions for 4 children"
    assert not TaskResult.objects.exclude(status="SUCCESSFUL").exists()
    pids = {r.result["pid"] for r in TaskResult.objects.all()}
    assert len(pids) >= 1000 // 5
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    for bad in (
        "connection already closed",
        "server closed the connection",
        "OperationalError",
        "InterfaceError",
        "Traceback",
    ):
        assert bad not in worker.output
    started, inherited = _forks(worker.output)
    assert started >= 1000 // 5 and inherited == 0
    wait_for(lambda: _sessions(app_name) == 0, timeout_s=5, what="no session left after shutdown")


def test_the_parent_still_records_a_lost_task_after_two_hundred_replacements(
    worker_factory, redis_url, use_broker
):
    _require_postgres()
    use_broker(redis_url)
    worker, queue, _ = _start(worker_factory, redis_url, "-c", "2", "--max-tasks-per-child", "1")
    results = [tasks.noop.apply_async(queue=queue) for _ in range(200)]
    for result in results:
        result.get(timeout=60)
    lost = tasks.kill_own_process.apply_async(queue=queue)
    wait_for(lambda: TaskResult.objects.filter(pk=lost.id, status="FAILED").exists(), timeout_s=20)
    row = TaskResult.objects.get(pk=lost.id)
    assert row.exception_class == "WorkerLost"
    assert row.exit_status == "signal 9 (SIGKILL)"
    assert tasks.add.apply_async((2, 3), queue=queue).get(timeout=20) == 5
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_with_conn_max_age_each_child_keeps_one_connection_across_tasks(
    worker_factory, redis_url, use_broker
):
    _require_postgres()
    use_broker(redis_url)
    worker, queue, _ = _start(
        worker_factory,
        redis_url,
        "-c",
        "2",
        "--max-tasks-per-child",
        "25",
        env={"CONN_MAX_AGE": "600"},
    )
    results = [prefork_tasks.orm_round_trip.apply_async((i,), queue=queue) for i in range(100)]
    seen = [r.get(timeout=60) for r in results]
    children = {s["pid"] for s in seen}
    backends = {s["backend"] for s in seen}
    assert len(children) >= 4  # 100 tasks / 25 per child
    assert len(backends) == len(children), f"{len(backends)} sessions for {len(children)} children"
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_children_build_their_own_psycopg_pool(worker_factory, redis_url, use_broker):
    _require_postgres()
    pytest.importorskip("psycopg_pool")
    use_broker(redis_url)
    worker, queue, app_name = _start(
        worker_factory,
        redis_url,
        "-c",
        "2",
        "--max-tasks-per-child",
        "10",
        env={"DJWORKER_TEST_DB_POOL": "1"},
    )
    results = [prefork_tasks.orm_round_trip.apply_async((i,), queue=queue) for i in range(60)]
    assert len([r.get(timeout=60) for r in results]) == 60
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert "Traceback" not in worker.output
    wait_for(lambda: _sessions(app_name) == 0, timeout_s=5, what="no session left after shutdown")


def test_on_the_django_broker_orm_tasks_succeed_and_sessions_stay_bounded(
    worker_factory, use_broker
):
    """The consumer's own DB session (the django:// transport) must not leak into children."""
    _require_postgres()
    use_broker("django://")
    worker, queue, app_name = _start(
        worker_factory, "django://", "-c", "2", "--max-tasks-per-child", "5"
    )
    results = [prefork_tasks.orm_round_trip.apply_async((i,), queue=queue) for i in range(300)]
    peak = 0

    def all_done() -> bool:
        nonlocal peak
        peak = max(peak, _sessions(app_name))
        return TaskResult.objects.filter(status="SUCCESSFUL").count() == 300

    wait_for(all_done, timeout_s=90, interval_s=0.02, what="300 successful tasks")
    # Two per child (its own for the result writes, the ORM task's while it runs) + the
    # parent's: the consumer's transport session, its LISTEN session, the control tick's and
    # the lease keeper's. Every child session is its own: a shared one would show fewer.
    assert 1 <= peak <= 2 * 2 + 4, f"{peak} sessions for 2 children"
    assert len({r.get(timeout=5)["pid"] for r in results}) >= 300 // 5
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert "Traceback" not in worker.output
    # The worker held its transport and LISTEN sessions at every one of these forks, yet no
    # child inherited a connection: children are forked by the fork server, which holds none.
    started, inherited = _forks(worker.output)
    assert started >= 300 // 5 and inherited == 0
    assert "inherited" not in worker.output.replace("connection(s) inherited by them", "")
    wait_for(lambda: _sessions(app_name) == 0, timeout_s=5, what="no session left after shutdown")


def test_a_child_also_silences_connections_made_outside_django():
    """Like the django:// transport's LISTEN connection: opened with psycopg directly."""
    _require_postgres()
    psycopg = pytest.importorskip("psycopg")
    raw = psycopg.connect(**connection.get_connection_params(), autocommit=True)
    backend = raw.info.backend_pid
    fd = raw.pgconn.socket
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            db.discard_inherited()
            if os.readlink(f"/proc/self/fd/{fd}") != "/dev/null":
                code = 2
            raw.close()  # even a polite close now says nothing to the server
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert raw.execute("SELECT pg_backend_pid()").fetchone()[0] == backend
    raw.close()


def _pid_runner(job, guard=None):
    from djworker.job import Outcome, OutcomeKind

    return Outcome(job.token, job.task_id, OutcomeKind.SUCCEEDED, detail=str(os.getpid()))


def _run_in_pool(pool, outcomes, n: int) -> set[int]:
    from djworker.job import Job

    pids = set()
    for token in range(1, n + 1):
        pool.apply_async(Job(token, {"id": f"t{token}", "task": "x"}))
        pids.add(int(outcomes.get(timeout=10).detail))
    return pids


def _connection_held_by_another_thread():
    """Open a session in a new thread and keep it until the returned callable is called."""
    opened, release = threading.Event(), threading.Event()

    def hold() -> None:
        _backend_pid()
        opened.set()
        release.wait(30)
        connections.close_all()

    thread = threading.Thread(target=hold)
    thread.start()
    assert opened.wait(10)

    def done() -> None:
        release.set()
        thread.join(10)

    return done


def test_replacement_children_inherit_no_connection_another_worker_thread_holds():
    """The clause itself: the process children are forked from holds no connection.

    Another thread of this process opens a session after the pool started and holds it while
    every child is replaced. Forked from this process, each replacement would inherit that
    session; forked from the fork server (forked before the session was opened), none does.
    The test process may hold sessions of its own from earlier tests (a live server thread):
    the first child shows how many, and every later child must inherit exactly as many.
    """
    import queue

    from djworker.concurrency.prefork import PreforkPool

    _require_postgres()
    db.track_connections()
    outcomes: queue.SimpleQueue = queue.SimpleQueue()
    pool = PreforkPool(
        size=1,
        on_outcome=outcomes.put,
        executor=TaskExecutor(run_task=_pid_runner),
        max_tasks_per_child=1,
    )
    pool.start()
    baseline = pool.inherited_connections  # the first child has reported ready
    release = _connection_held_by_another_thread()
    try:
        pids = _run_in_pool(pool, outcomes, 10)
        assert len(pids) == 10  # one child per task: ten replacements, forked while it was held
    finally:
        pool.stop(graceful=True, timeout_s=10)  # every child started reports before it retires
        release()
    started = pool.children_started  # 11, or 10 if the stop came before the last replacement
    assert started >= 10
    assert pool.inherited_connections == baseline * started, (
        f"{pool.inherited_connections} connections inherited by {started} children; the first "
        f"one inherited {baseline}"
    )


def test_a_connection_open_before_the_pool_starts_is_counted_and_discarded_in_children():
    """The count the proof above relies on is real: it sees a connection when there is one."""
    import queue

    from djworker.concurrency.prefork import PreforkPool

    _require_postgres()
    db.track_connections()
    outcomes: queue.SimpleQueue = queue.SimpleQueue()
    release = _connection_held_by_another_thread()
    pool = PreforkPool(
        size=1,
        on_outcome=outcomes.put,
        executor=TaskExecutor(run_task=_pid_runner),
        max_tasks_per_child=1,
    )
    try:
        pool.start()
        _run_in_pool(pool, outcomes, 3)
        assert pool.inherited_connections >= 3  # one in each child that ran a task
    finally:
        pool.stop(graceful=False)
        release()
