"""A threads-pool slot outlives any error of the bookkeeping around a task, and reports it.

A slot that died left its job without an outcome (holding a place in the prefetch window for
good) and the jobs queued behind it without a thread: the worker stalled with nothing logged.
"""

from __future__ import annotations

import queue
from typing import Any

import pytest

from djworker import message, result_store
from djworker.concurrency.threads import ThreadPool
from djworker.execution import TaskExecutor
from djworker.job import Job, Outcome, OutcomeKind


def job(token: int) -> Job:
    envelope = message.build(
        task_id=f"job-{token}", task_name="t", args=[], kwargs={}, queue="q", priority=0
    )
    return Job(token, envelope)


def run_two(pool_runner: Any) -> list[Outcome]:
    outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    executor = TaskExecutor(run_task=lambda j, guard: pool_runner(j))
    pool = ThreadPool(size=1, on_outcome=outcomes.put, executor=executor)
    pool.start()
    try:
        pool.apply_async(job(1))
        pool.apply_async(job(2))
        return [outcomes.get(timeout=10), outcomes.get(timeout=10)]
    finally:
        pool.stop(graceful=True, timeout_s=5)


def test_a_failure_that_cannot_be_recorded_is_still_reported_and_the_slot_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unrecordable(envelope: dict[str, Any], exc: BaseException) -> None:
        raise RuntimeError("the result table is gone too")

    monkeypatch.setattr(result_store, "record_unrecordable", unrecordable)

    def runner(j: Job) -> Outcome:
        if j.token == 1:
            raise ValueError("bookkeeping failed")
        return Outcome(j.token, j.task_id, OutcomeKind.SUCCEEDED)

    first, second = run_two(runner)
    assert (first.token, first.kind) == (1, OutcomeKind.FAILED)
    assert (second.token, second.kind) == (2, OutcomeKind.SUCCEEDED)


def test_an_error_escaping_run_job_is_reported_as_lost_and_the_slot_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = ThreadPool.run_job

    def run_job(self: ThreadPool, j: Job) -> Outcome:
        if j.token == 1:
            raise RuntimeError("escaped")
        return real(self, j)

    monkeypatch.setattr(ThreadPool, "run_job", run_job)
    first, second = run_two(lambda j: Outcome(j.token, j.task_id, OutcomeKind.SUCCEEDED))
    assert (first.token, first.kind, first.requeue) == (1, OutcomeKind.LOST, True)
    assert (second.token, second.kind) == (2, OutcomeKind.SUCCEEDED)
