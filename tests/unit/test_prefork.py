"""The prefork pool in this process, with a runner that needs no broker or database."""

from __future__ import annotations

import gc
import os
import queue
import signal
import time
import weakref

import pytest

from djworker.concurrency.prefork import PreforkPool
from djworker.concurrency.prefork_child_handle import describe_exit
from djworker.concurrency.prefork_child_main import child_guard, current_rss_kib
from djworker.exceptions import SoftTimeLimitExceeded
from djworker.execution import TaskExecutor
from djworker.job import Job, Limits, Outcome, OutcomeKind


def _runner(job: Job, guard: object) -> Outcome:
    time.sleep(job.envelope.get("sleep", 0))
    return Outcome(job.token, job.task_id, OutcomeKind.SUCCEEDED, detail=str(os.getpid()))


def _job(token: int, **envelope: object) -> Job:
    return Job(token, {"id": f"t{token}", "task": "x", **envelope})


@pytest.fixture
def make_pool():
    pools: list[PreforkPool] = []

    def make(size: int = 2, **kwargs: object) -> tuple[PreforkPool, queue.SimpleQueue[Outcome]]:
        outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        pool = PreforkPool(
            size=size, on_outcome=outcomes.put, executor=TaskExecutor(run_task=_runner), **kwargs
        )  # type: ignore[arg-type]
        pools.append(pool)
        pool.start()
        return pool, outcomes

    yield make
    for pool in pools:
        pool.stop(graceful=False)


def test_exit_statuses_read_as_signal_names_or_exit_codes():
    assert describe_exit(-9) == "signal 9 (SIGKILL)"
    assert describe_exit(-11) == "signal 11 (SIGSEGV)"
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(None) == "unknown exit status"


def test_resident_memory_is_the_current_figure_and_falls_when_memory_is_freed():
    before = current_rss_kib()
    block = os.urandom(1024) * (1024 * 64)  # 64 MiB
    during = current_rss_kib()
    del block
    after = current_rss_kib()
    assert during - before > 50_000
    assert after < during - 50_000  # a peak figure (ru_maxrss) would not fall


def test_the_child_guard_raises_the_soft_limit_inside_the_running_code():
    with pytest.raises(SoftTimeLimitExceeded), child_guard(Limits(soft_s=0.05)):
        time.sleep(1)


def test_jobs_run_in_children_and_stop_returns_the_unstarted_ones_at_once(make_pool):
    pool, outcomes = make_pool(size=1)
    for token in range(1, 4):
        pool.apply_async(_job(token, sleep=0.3))
    time.sleep(0.1)
    assert pool.busy == 1
    unstarted = pool.stop(graceful=True, timeout_s=0)
    assert [job.token for job in unstarted] == [2, 3]
    first = outcomes.get(timeout=5)
    assert first.token == 1 and int(first.detail) != os.getpid()
    assert pool.stop(graceful=True, timeout_s=5) == []  # idempotent
    assert pool.size == 1 and pool.info()["processes"] == []


def test_a_child_is_replaced_after_max_tasks(make_pool):
    pool, outcomes = make_pool(size=1, max_tasks_per_child=2)
    pids = []
    for token in range(1, 5):
        pool.apply_async(_job(token))
        pids.append(int(outcomes.get(timeout=10).detail))
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[1] != pids[2]


def test_shrink_retires_only_idle_children_and_grow_adds_them(make_pool):
    pool, outcomes = make_pool(size=2)
    pool.apply_async(_job(1, sleep=0.5))
    time.sleep(0.1)
    pool.shrink(1)
    time.sleep(0.2)
    info = pool.info()
    assert pool.size == 1 and info["busy"] == 1
    assert [p["task_id"] for p in info["processes"]] == ["t1"]  # the idle one went
    assert outcomes.get(timeout=5).kind is OutcomeKind.SUCCEEDED
    pool.grow(2)
    deadline = time.monotonic() + 10
    while len(pool.info()["processes"]) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pool.info()["processes"]) == 3


def test_terminate_job_kills_the_child_running_it_and_reports_the_job(make_pool, monkeypatch):
    recorded: list[tuple[str, str]] = []

    def fake_lost(
        job: Job, *, reason: str, exit_status: str = "", exception_class: str = ""
    ) -> Outcome:
        recorded.append((exception_class, exit_status))
        return Outcome(job.token, job.task_id, OutcomeKind.LOST, detail=reason)

    monkeypatch.setattr("djworker.execution.lost_outcome", fake_lost)
    pool, outcomes = make_pool(size=1)
    pool.apply_async(_job(1, sleep=30))
    time.sleep(0.2)
    pid = pool.info()["processes"][0]["pid"]
    assert pool.terminate_job("t1") is True
    assert pool.terminate_job("t1") is False
    assert outcomes.get(timeout=5).kind is OutcomeKind.LOST
    assert recorded == [("Terminated", "signal 9 (SIGKILL)")]
    pool.apply_async(_job(2))
    assert int(outcomes.get(timeout=10).detail) != pid


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_garbage_cycles_the_parent_held_when_it_forked_are_still_collected_afterwards(make_pool):
    gc.disable()  # keep the cycle uncollected until the pool has forked
    try:
        cycle = _Cycle()
        ref = weakref.ref(cycle)
        del cycle
        make_pool(size=1)
    finally:
        gc.enable()
    gc.collect()
    assert ref() is None, "a cycle frozen at fork time stays in the parent for good"


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def _wait_for_children(pool: PreforkPool, n: int) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = [p["pid"] for p in pool.info()["processes"]]
        if len(pids) == n:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"{pool.info()['processes']} is not {n} pool processes")


def test_children_are_forked_by_the_fork_server_not_by_the_worker(make_pool):
    pool, outcomes = make_pool(size=2)
    server = pool.info()["fork_server_pid"]
    assert server not in (None, os.getpid())
    assert _parent_of(server) == os.getpid()
    assert {_parent_of(pid) for pid in _wait_for_children(pool, 2)} == {server}
    pool.apply_async(_job(1))
    assert outcomes.get(timeout=10).kind is OutcomeKind.SUCCEEDED


def test_a_killed_fork_server_is_replaced_and_its_children_with_it(make_pool):
    pool, outcomes = make_pool(size=2)
    old_server = pool.info()["fork_server_pid"]
    old_children = set(_wait_for_children(pool, 2))
    os.kill(old_server, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pool.info()["fork_server_pid"] == old_server and time.monotonic() < deadline:
        time.sleep(0.05)
    new_server = pool.info()["fork_server_pid"]
    assert new_server != old_server
    new_children = set(_wait_for_children(pool, 2))
    assert not new_children & old_children
    assert {_parent_of(pid) for pid in new_children} == {new_server}
    pool.apply_async(_job(1))
    assert int(outcomes.get(timeout=10).detail) in new_children


def test_the_fork_server_exits_with_the_pool(make_pool):
    pool, _ = make_pool(size=1)
    server = pool.info()["fork_server_pid"]
    pool.stop(graceful=True, timeout_s=5)
    with pytest.raises(ProcessLookupError):
        os.kill(server, 0)
