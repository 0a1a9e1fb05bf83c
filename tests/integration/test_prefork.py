"""The prefork pool in real ``runworker`` processes: children, recycling, limits, loss, shutdown."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from djworker.models import TaskResult
from tests.integration.harness import ROOT, WorkerProcess, unique_queue, wait_for
from tests.taskapp import prefork_tasks, tasks
from tests.taskapp.models import Note

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _prefork(worker_factory, redis_url, *args: str) -> tuple[WorkerProcess, str]:
    queue = unique_queue("prefork")
    worker = worker_factory("--pool", "prefork", "-Q", queue, *args, broker_url=redis_url)
    return worker, queue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes: its parent has not reaped it yet.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_tasks_run_in_child_processes_that_are_replaced_after_max_tasks(
    worker_factory, redis_url, use_broker
):
    use_broker(redis_url)
    worker, queue = _prefork(worker_factory, redis_url, "-c", "2", "--max-tasks-per-child", "3")
    results = [tasks.whoami.apply_async(queue=queue) for _ in range(12)]
    pids = [r.get(timeout=30)["pid"] for r in results]
    assert worker.process is not None and worker.process.pid not in pids
    assert len(set(pids)) >= 12 // 3
    assert max(pids.count(pid) for pid in set(pids)) <= 3
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_a_child_killed_mid_task_is_recorded_failed_with_its_signal_and_replaced(
    worker_factory, redis_url, use_broker
):
    use_broker(redis_url)
    worker, queue = _prefork(worker_factory, redis_url, "-c", "1")
    lost = tasks.kill_own_process.apply_async(queue=queue)
    wait_for(lambda: TaskResult.objects.filter(pk=lost.id, status="FAILED").exists(), timeout_s=20)
    row = TaskResult.objects.get(pk=lost.id)
    assert (row.exception_class, row.exit_status) == ("WorkerLost", "signal 9 (SIGKILL)")
    assert tasks.add.apply_async((1, 2), queue=queue).get(timeout=20) == 3
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_a_task_that_rejects_on_worker_loss_is_delivered_again_and_its_success_clears_the_exit(
    worker_factory, redis_url, use_broker
):
    use_broker(redis_url)
    worker, queue = _prefork(worker_factory, redis_url, "-c", "1")
    result = prefork_tasks.die_once_then_succeed.apply_async(("die-once",), queue=queue)
    assert result.get(timeout=30) == "second run"
    row = TaskResult.objects.get(pk=result.id)
    # The first run's death is history: the row describes the run that finished.
    assert (row.status, row.attempts, row.exit_status) == ("SUCCESSFUL", 2, "")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_the_hard_limit_kills_the_child_and_its_grandchildren_and_records_a_time_limit_failure(
    worker_factory, redis_url, use_broker
):
    use_broker(redis_url)
    worker, queue = _prefork(worker_factory, redis_url, "-c", "1")
    result = prefork_tasks.start_grandchild_then_sleep.apply_async(
        ("grandchild", 30), queue=queue, time_limit=1.5
    )
    wait_for(
        lambda: TaskResult.objects.filter(pk=result.id, status="FAILED").exists(), timeout_s=20
    )
    row = TaskResult.objects.get(pk=result.id)
    assert row.exception_class == "TimeLimitExceeded"
    grandchild = int(Note.objects.get(text__startswith="grandchild:").text.split(":")[1])
    wait_for(lambda: not _alive(grandchild), timeout_s=5, what="the grandchild to be gone")
    assert tasks.add.apply_async((2, 2), queue=queue).get(timeout=20) == 4
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_the_soft_limit_raises_inside_the_task_so_it_can_clean_up(
    worker_factory, redis_url, use_broker
):
    use_broker(redis_url)
    worker, queue = _prefork(worker_factory, redis_url, "-c", "1", "--soft-time-limit", "0.5")
    result = prefork_tasks.wait_for_soft_limit.apply_async(("soft-cleanup",), queue=queue)
    assert result.get(timeout=20) == "cleaned up"
    assert Note.objects.filter(text="soft-cleanup").exists()
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_a_task_can_use_a_process_pool_inside_a_child(worker_factory, redis_url, use_broker):
    use_broker(redis_url)
    worker, queue = _prefork(worker_factory, redis_url, "-c", "1")
    result = prefork_tasks.sum_of_squares_in_subprocesses.apply_async((10,), queue=queue)
    assert result.get(timeout=30) == sum(i * i for i in range(10))
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_a_child_over_its_memory_limit_is_replaced_after_its_task(
    worker_factory, redis_url, use_broker
):
    use_broker(redis_url)
    worker, queue = _prefork(
        worker_factory, redis_url, "-c", "1", "--max-memory-per-child", "300MB"
    )
    first = tasks.whoami.apply_async(queue=queue).get(timeout=20)["pid"]
    assert tasks.whoami.apply_async(queue=queue).get(timeout=20)["pid"] == first
    hoarder = prefork_tasks.hoard_memory.apply_async((400,), queue=queue).get(timeout=30)
    assert hoarder == first
    assert tasks.whoami.apply_async(queue=queue).get(timeout=20)["pid"] != first
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0


def test_a_memory_limit_below_a_fresh_childs_size_is_refused_with_that_size(redis_url):
    from tests.integration.harness import database_url_for_workers

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url_for_workers(),
        "DJWORKER_BROKER_URL": redis_url,
    }
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "manage.py"),
            "runworker",
            "--pool",
            "prefork",
            "-c",
            "1",
            "-Q",
            unique_queue(),
            "--max-memory-per-child",
            "1000",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    match = re.search(r"below the (\d+) KiB a freshly started pool process", run.stderr)
    assert match, run.stderr
    assert int(match.group(1)) > 1000


def test_the_parent_shuts_down_warm_on_sigterm_while_every_child_is_busy(
    worker_factory, redis_url, use_broker
):
    use_broker(redis_url)
    worker, queue = _prefork(worker_factory, redis_url, "-c", "2")
    results = [tasks.sleep.apply_async((3,), {"note": f"warm-{i}"}, queue=queue) for i in range(2)]
    wait_for(lambda: TaskResult.objects.filter(status="RUNNING").count() == 2, timeout_s=20)
    worker.signal(signal.SIGTERM)
    worker.wait_for_output("warm shutdown", timeout_s=2.5)
    # The parent answered while both children were still busy.
    assert TaskResult.objects.filter(status="RUNNING").count() == 2
    assert worker.wait() == 0
    assert [r.get(timeout=5) for r in results] == [3, 3]
    assert Note.objects.filter(text__startswith="warm-").count() == 2


def test_a_sigterm_that_also_reaches_the_fork_server_still_shuts_down_warm(
    worker_factory, redis_url, use_broker
):
    """As when a supervisor signals every process of the worker's group or cgroup."""
    use_broker(redis_url)
    worker, queue = _prefork(worker_factory, redis_url, "-c", "1")
    result = tasks.sleep.apply_async((2,), {"note": "group-term"}, queue=queue)
    wait_for(lambda: TaskResult.objects.filter(status="RUNNING").exists(), timeout_s=20)
    assert worker.process is not None
    pid = worker.process.pid
    (fork_server,) = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    os.kill(int(fork_server), signal.SIGTERM)
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert result.get(timeout=5) == 2
    assert Note.objects.filter(text="group-term").count() == 1


def test_a_second_signal_stops_now_and_kills_the_children(worker_factory, redis_url, use_broker):
    use_broker(redis_url)
    worker, queue = _prefork(worker_factory, redis_url, "-c", "1")
    tasks.whoami.apply_async(queue=queue).get(timeout=20)
    child = tasks.whoami.apply_async(queue=queue).get(timeout=20)["pid"]
    tasks.sleep.apply_async((30,), queue=queue)
    wait_for(lambda: TaskResult.objects.filter(status="RUNNING").exists(), timeout_s=20)
    worker.signal(signal.SIGTERM)
    worker.wait_for_output("warm shutdown")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout_s=10) != 0
    wait_for(lambda: not _alive(child), timeout_s=5, what="the child to be gone")
