"""The BasePool contract, written once and run against every pool.

Tests drive a pool object directly, in this process, with the real ``execute()`` and the real
test database. ``tests/contract/test_pool_contract.py`` runs it for the pools that need no
monkey-patching; ``tests/green/test_green_contract.py`` runs it inside a gevent- or
eventlet-patched pytest process (``scripts/test-green``).

A test module imports ``PoolContract`` and gives it a ``pool_name`` fixture. Waiting uses
``time.sleep``, which is green in a patched process, so the pool's greenlets get to run.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from djworker import message
from djworker.concurrency import resolve_pool
from djworker.concurrency.base import BasePool
from djworker.exceptions import NotSupportedByPool
from djworker.execution import TaskExecutor
from djworker.job import Job, Limits, Outcome, OutcomeKind
from djworker.models import TaskResult
from djworker.task_definition import Task
from tests.taskapp import green_tasks, tasks
from tests.taskapp.models import Note

#: pool name -> what ``resolve_pool`` accepts
POOL_PATHS = {
    "solo": "solo",
    "threads": "threads",
    "prefork": "prefork",
    "gevent": "gevent",
    "eventlet": "eventlet",
    "custom": "example_project.pools:ExecutorPool",
}


def wait_until(predicate: Callable[[], Any], *, timeout_s: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or predicate}")
        time.sleep(0.02)
    return value


class Harness:
    """A pool under test, its outcomes, and helpers to feed it real jobs."""

    def __init__(self, pool_class: type[BasePool], size: int) -> None:
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._tokens = iter(range(1, 1_000_000))
        self.pool = pool_class(size=size, on_outcome=self._collect, executor=TaskExecutor())

    def _collect(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def job(self, task: Task[Any, Any], *args: Any, limits: Limits | None = None) -> Job:
        envelope = message.build(
            task_id=str(uuid.uuid4()),
            task_name=task.name,
            args=list(args),
            kwargs={},
            queue="contract",
            priority=0,
            eta=None,
            expires=None,
            time_limit=None,
            soft_time_limit=None,
            enqueued_at=None,
        )
        return Job(next(self._tokens), envelope, limits=limits or Limits(), hostname="contract")

    def submit(self, task: Task[Any, Any], *args: Any, limits: Limits | None = None) -> Job:
        job = self.job(task, *args, limits=limits)
        self.pool.apply_async(job)
        return job

    def outcome_of(self, job: Job, timeout_s: float = 15.0) -> Outcome:
        def found() -> Outcome | None:
            with self._lock:
                return next((o for o in self.outcomes if o.token == job.token), None)

        return wait_until(found, timeout_s=timeout_s, what=f"the outcome of {job.task_id}")

    def row(self, job: Job) -> TaskResult:
        return TaskResult.objects.get(pk=job.task_id)


class PoolContract:
    """Every pool: start, apply, results and errors, stop, info, and each claimed capability."""

    size = 2

    @pytest.fixture
    def pool_class(self, pool_name: str) -> type[BasePool]:
        return resolve_pool(POOL_PATHS[pool_name])

    @pytest.fixture
    def harness(self, pool_class: type[BasePool]) -> Iterator[Harness]:
        size = pool_class.fixed_size or self.size
        h = Harness(pool_class, size)
        h.pool.start()
        yield h
        h.pool.stop(graceful=True, timeout_s=5)

    # -- running jobs ------------------------------------------------------------------------

    def test_a_job_runs_and_its_result_is_stored(self, harness: Harness) -> None:
        job = harness.submit(tasks.add, 2, 3)
        assert harness.outcome_of(job).kind is OutcomeKind.SUCCEEDED
        row = harness.row(job)
        assert (row.status, row.result) == ("SUCCESSFUL", 5)

    def test_an_error_in_a_task_is_reported_as_a_failure(self, harness: Harness) -> None:
        job = harness.submit(tasks.fail, "contract boom")
        outcome = harness.outcome_of(job)
        assert outcome.kind is OutcomeKind.FAILED
        assert "contract boom" in outcome.detail
        row = harness.row(job)
        assert (row.status, row.exception_class) == ("FAILED", "ValueError")

    def test_every_job_reports_exactly_one_outcome(self, harness: Harness) -> None:
        jobs = [harness.submit(tasks.add, i, i) for i in range(12)]
        for job in jobs:
            harness.outcome_of(job)
        time.sleep(0.1)  # a duplicate outcome would arrive right after the first
        tokens = [o.token for o in harness.outcomes]
        assert sorted(tokens) == sorted(job.token for job in jobs)

    def test_info_is_json_and_names_the_pool_and_its_size(self, harness: Harness) -> None:
        info = harness.pool.info()
        json.dumps(info)
        assert info["pool"] == harness.pool.describe()
        assert info["size"] == harness.pool.size
        assert info["busy"] == 0

    # -- stopping ----------------------------------------------------------------------------

    def test_a_graceful_stop_lets_the_running_job_finish(self, harness: Harness) -> None:
        if harness.pool.blocks_consumer:
            pytest.skip("apply_async returns only when the job is done: nothing runs at stop")
        job = harness.submit(tasks.sleep, 0.3, "finished-before-stop")
        wait_until(lambda: harness.pool.busy, what="the job to start")
        harness.pool.stop(graceful=True, timeout_s=10)
        assert harness.outcome_of(job, timeout_s=1).kind is OutcomeKind.SUCCEEDED
        assert Note.objects.filter(text="finished-before-stop").exists()

    def test_stop_hands_back_the_jobs_that_never_started(self, pool_class: type[BasePool]) -> None:
        if pool_class.blocks_consumer:
            pytest.skip("a pool that runs jobs inline never holds unstarted jobs")
        h = Harness(pool_class, 1)
        h.pool.start()
        try:
            running = h.submit(tasks.sleep, 0.5)
            wait_until(lambda: h.pool.busy, what="the first job to start")
            waiting = [h.submit(tasks.add, i, 1) for i in range(3)]
            handed_back = h.pool.stop(graceful=True, timeout_s=0)
            assert sorted(j.token for j in handed_back) == sorted(j.token for j in waiting)
            assert h.outcome_of(running).kind is OutcomeKind.SUCCEEDED
        finally:
            h.pool.stop(graceful=True, timeout_s=5)

    def test_withdraw_takes_back_only_the_named_jobs_no_slot_started(
        self, pool_class: type[BasePool]
    ) -> None:
        if pool_class.blocks_consumer:
            pytest.skip("a pool that runs jobs inline never holds unstarted jobs")
        h = Harness(pool_class, 1)
        h.pool.start()
        try:
            running = h.submit(tasks.sleep, 0.5)
            wait_until(lambda: h.pool.busy, what="the first job to start")
            waiting = [h.submit(tasks.add, i, 1) for i in range(3)]
            assert sorted(j.token for j in h.pool.queued()) == sorted(j.token for j in waiting)
            taken = h.pool.withdraw([running.token, waiting[0].token, waiting[2].token])
            assert sorted(j.token for j in taken) == [waiting[0].token, waiting[2].token]
            assert h.outcome_of(waiting[1]).kind is OutcomeKind.SUCCEEDED
            assert h.outcome_of(running).kind is OutcomeKind.SUCCEEDED
            time.sleep(0.2)  # a withdrawn job that ran anyway would report right after
            assert {o.token for o in h.outcomes} == {running.token, waiting[1].token}
        finally:
            h.pool.stop(graceful=True, timeout_s=5)

    def test_a_stop_that_is_not_graceful_does_not_wait_for_the_running_job(
        self, pool_class: type[BasePool]
    ) -> None:
        if pool_class.blocks_consumer:
            pytest.skip("a pool that runs jobs inline cannot be stopped from its own thread")
        h = Harness(pool_class, 1)
        h.pool.start()
        job = h.submit(tasks.sleep, 1.0)
        wait_until(lambda: h.pool.busy, what="the job to start")
        assert h.pool.stop(graceful=False) == []
        assert not [o for o in h.outcomes if o.token == job.token]
        time.sleep(1.2)  # pools that cannot kill a thread let it finish; don't leak it

    # -- time limits, terminate, autoscale: only where the pool claims them --------------------

    def test_the_soft_time_limit_raises_inside_the_task(self, harness: Harness) -> None:
        if not harness.pool.supports_soft_time_limit:
            pytest.skip(f"{harness.pool.describe()} does not claim soft time limits")
        job = harness.submit(green_tasks.wait_for_soft_limit, "soft-hit", limits=Limits(soft_s=0.3))
        assert harness.outcome_of(job).kind is OutcomeKind.SUCCEEDED
        assert harness.row(job).result == "cleaned up"
        assert Note.objects.filter(text="soft-hit").exists()

    def test_the_hard_time_limit_stops_the_task_and_records_it(self, harness: Harness) -> None:
        if not harness.pool.supports_hard_time_limit:
            pytest.skip(f"{harness.pool.describe()} does not claim hard time limits")
        job = harness.submit(green_tasks.sleep_forever, "", limits=Limits(hard_s=0.3))
        outcome = harness.outcome_of(job)
        assert outcome.kind is OutcomeKind.LOST and not outcome.requeue
        row = harness.row(job)
        assert (row.status, row.exception_class) == ("FAILED", "TimeLimitExceeded")
        after = harness.submit(tasks.add, 1, 1)
        assert harness.outcome_of(after).kind is OutcomeKind.SUCCEEDED

    def test_terminate_stops_the_running_task_by_id(self, harness: Harness) -> None:
        if not harness.pool.supports_terminate:
            with pytest.raises(NotSupportedByPool):
                harness.pool.terminate_job("any-id")
            return
        assert harness.pool.terminate_job("no-such-task") is False
        job = harness.submit(green_tasks.sleep_forever, "terminate-me")
        wait_until(lambda: Note.objects.filter(text="terminate-me").exists(), what="the task")
        assert harness.pool.terminate_job(job.task_id) is True
        assert harness.outcome_of(job).kind is OutcomeKind.LOST
        assert harness.row(job).status == "FAILED"
        after = harness.submit(tasks.add, 2, 2)
        assert harness.outcome_of(after).kind is OutcomeKind.SUCCEEDED

    def test_grow_and_shrink_change_the_size_where_claimed(self, harness: Harness) -> None:
        pool = harness.pool
        if not pool.supports_autoscale:
            with pytest.raises(NotSupportedByPool):
                pool.grow(1)
            with pytest.raises(NotSupportedByPool):
                pool.shrink(1)
            return
        start = pool.size
        pool.grow(2)
        assert pool.size == start + 2
        jobs = [harness.submit(tasks.sleep, 0.2) for _ in range(start + 2)]
        wait_until(lambda: pool.busy == start + 2, what=f"{start + 2} jobs running at once")
        pool.shrink(1)
        assert pool.size == start + 1
        for job in jobs:
            assert harness.outcome_of(job).kind is OutcomeKind.SUCCEEDED
        after = harness.submit(tasks.add, 3, 3)
        assert harness.outcome_of(after).kind is OutcomeKind.SUCCEEDED
