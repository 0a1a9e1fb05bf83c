"""``execute(job)``: running one task, the same way in every pool.

Database hygiene, result rows, retries and signals are written here once. Pools wrap this with
their own limit enforcement; they report ``execute``'s ``Outcome`` back to the consumer. Pools
reach this module only through the ``TaskExecutor`` the worker hands them, which also holds the
policy for a job that cannot be recorded or whose slot was lost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
import traceback as traceback_module
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import InterfaceError, OperationalError, close_old_connections
from django.utils import timezone

from djworker import delivery_cap, message, result_store, signals, task_progress
from djworker.exceptions import TaskRevoked, UnknownTask, WorkerLost
from djworker.job import Job, Limits, Outcome, OutcomeKind
from djworker.log_safety import get_logger
from djworker.task_definition import Task, get_task
from djworker.task_lookup import refusal, task_for_message
from djworker.worker_connections import task_connections

if TYPE_CHECKING:
    from djworker.concurrency.executor import LimitGuard

logger = get_logger(__name__)
#: a failing task's log line with its traceback (see ``_on_error``)
traceback_logger = get_logger("djworker.tracebacks")

#: how long a slot waits before handing back a job it could not run for want of a database
DATABASE_DOWN_PAUSE_S = 1.0


def execute(job: Job, guard: LimitGuard | None = None) -> Outcome:
    """Run the task named by the job's envelope and record what happened.

    The task's connections are handled as Django handles them around a request: stale or
    broken ones are closed before and after (``CONN_MAX_AGE`` and ``CONN_HEALTH_CHECKS``
    honoured). In a worker they are not the ones the worker records the run with, which stay
    open across tasks (``djworker.worker_connections``).
    """
    with task_connections():
        close_old_connections()
        try:
            return _execute(job, guard or _no_guard)
        finally:
            close_old_connections()


def _no_guard(limits: Limits) -> AbstractContextManager[object]:
    return contextlib.nullcontext()


def _execute(job: Job, guard: LimitGuard) -> Outcome:
    envelope = job.envelope
    try:
        task = task_for_message(envelope)
    except UnknownTask as exc:
        result_store.record_refused(envelope, **refusal(exc))
        return Outcome(job.token, job.task_id, OutcomeKind.FAILED, detail=str(exc))

    started_at = timezone.now()
    # The row counts this message's runs for the delivery cap. A task that ignores its result
    # has no row to count in, so it gets one only once the broker says the message came back.
    tracked = not task.ignore_result or job.redelivered
    if tracked:
        try:
            deliveries = task.record_started(
                envelope,
                hostname=job.hostname,
                started_at=started_at,
                redelivered=job.redelivered,
                uncounted_before=task.ignore_result and job.redelivered,
            )
        except TaskRevoked as exc:
            logger.warning("task=%s id=%s not run: %s", task.name, job.task_id, exc)
            return Outcome(job.token, job.task_id, OutcomeKind.FAILED, detail=str(exc))
        if delivery_cap.over(job, deliveries):
            return delivery_cap.fail(job, deliveries, ran=False, task=task)
    signals.send_robust(
        signals.task_prerun,
        task,
        task_id=job.task_id,
        args=envelope["args"],
        kwargs=envelope["kwargs"],
    )
    wall_start = time.perf_counter()
    cpu_start = time.thread_time()
    try:
        with guard(job.limits), task_progress.running(job.task_id):
            value = task.invoke(envelope)
        _ensure_json_result(value, task)
    except (Exception, KeyboardInterrupt, SystemExit) as exc:
        timing = {
            "cpu_time_s": time.thread_time() - cpu_start,
            "wall_time_s": time.perf_counter() - wall_start,
        }
        return _on_error(job, task, exc, started_at=started_at, **timing)
    cpu_time_s = time.thread_time() - cpu_start
    wall_time_s = time.perf_counter() - wall_start
    if tracked:
        task.record_success(
            envelope,
            value=None if task.ignore_result else value,
            hostname=job.hostname,
            started_at=started_at,
            cpu_time_s=cpu_time_s,
            wall_time_s=wall_time_s,
        )
    logger.info(
        "task=%s id=%s state=SUCCESSFUL wall_s=%.3f cpu_s=%.3f",
        task.name,
        job.task_id,
        wall_time_s,
        cpu_time_s,
    )
    signals.send_robust(signals.task_success, task, task_id=job.task_id, result=value)
    signals.send_robust(signals.task_postrun, task, task_id=job.task_id, status="SUCCESSFUL")
    return Outcome(job.token, job.task_id, OutcomeKind.SUCCEEDED)


def _ensure_json_result(value: Any, task: Task[Any, Any]) -> None:
    if task.ignore_result:
        return
    problem = message.unstorable(value, "result")
    if problem is not None:
        raise TypeError(f"task {task.name!r} returned a value the database cannot store: {problem}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"task {task.name!r} returned a value JSON cannot carry: {exc}") from None


def _on_error(
    job: Job,
    task: Task[Any, Any],
    exc: BaseException,
    *,
    started_at: Any,
    cpu_time_s: float,
    wall_time_s: float,
) -> Outcome:
    envelope = job.envelope
    trace = traceback_module.format_exc()
    attempt = envelope["attempt"]
    will_retry = isinstance(exc, task.autoretry_for) and (
        task.max_retries is None or attempt < task.max_retries
    )
    task.record_failure(
        envelope,
        error=exc,
        exception_class=type(exc).__qualname__,
        exception_message=str(exc),
        traceback=trace,
        hostname=job.hostname,
        started_at=started_at,
        cpu_time_s=cpu_time_s,
        wall_time_s=wall_time_s,
        will_retry=will_retry,
        new_message=will_retry,
    )
    if will_retry:
        countdown = retry_countdown(task, attempt)
        retry = envelope.copy()
        retry["attempt"] = attempt + 1
        retry["eta"] = (timezone.now() + timedelta(seconds=countdown)).isoformat()
        message.validate(retry)
        logger.warning(
            "task=%s id=%s state=READY retry=%d/%s in_s=%.1f error=%s",
            task.name,
            job.task_id,
            attempt + 1,
            task.max_retries,
            countdown,
            type(exc).__name__,
        )
        signals.send_robust(
            signals.task_retry, task, task_id=job.task_id, exception=exc, countdown_s=countdown
        )
        signals.send_robust(signals.task_postrun, task, task_id=job.task_id, status="READY")
        return Outcome(
            job.token,
            job.task_id,
            OutcomeKind.RETRY,
            retry_envelope=retry,
            retry_countdown_s=countdown,
        )
    failed = (
        "task=%s id=%s state=FAILED error=%s: %s",
        task.name,
        job.task_id,
        type(exc).__name__,
        exc,
    )
    if traceback_logger.isEnabledFor(logging.ERROR):
        # The same line with the traceback under it; silenced on its own by raising the level
        # of the "djworker.tracebacks" logger, which leaves the one-line record.
        traceback_logger.error(*failed, exc_info=exc)
    else:
        logger.error(*failed)
    signals.send_robust(
        signals.task_failure, task, task_id=job.task_id, exception=exc, traceback=trace
    )
    signals.send_robust(signals.task_postrun, task, task_id=job.task_id, status="FAILED")
    return Outcome(
        job.token, job.task_id, OutcomeKind.FAILED, detail=f"{type(exc).__name__}: {exc}"
    )


def retry_countdown(task: Task[Any, Any], attempt: int) -> float:
    """Seconds before retry number ``attempt + 1``: exponential backoff when asked for."""
    if not task.retry_backoff:
        return float(task.default_retry_delay)
    base = 1.0 if task.retry_backoff is True else float(task.retry_backoff)
    countdown = min(task.retry_backoff_max, base * (2**attempt))
    if task.retry_jitter:
        # Full jitter spreads a burst of failing tasks instead of retrying them in lock step.
        countdown = random.uniform(0, countdown)
    return countdown


def lost_outcome(
    job: Job, *, reason: str, exit_status: str = "", exception_class: str = ""
) -> Outcome:
    """Record a job whose slot died or was stopped, and say whether to redeliver it.

    Called by pools in the worker's main process, after the slot was stopped. A task with
    ``reject_on_worker_lost`` goes back to the broker until its message used up its delivery
    cap; any other is recorded FAILED. A run that stored its own outcome just before its slot
    was stopped (a hard limit reached as the task returned) keeps that outcome.
    """
    envelope = job.envelope
    finished, deliveries = result_store.run_state(job.task_id)
    if finished is not None:
        logger.warning(
            "task=%s id=%s ended %s before its slot was stopped (%s); keeping that outcome",
            envelope["task"],
            job.task_id,
            finished,
            reason,
        )
        kind = OutcomeKind.SUCCEEDED if finished == "SUCCESSFUL" else OutcomeKind.FAILED
        return Outcome(job.token, job.task_id, kind, detail=reason)
    name = exception_class or WorkerLost.__name__
    try:
        task: Task[Any, Any] | None = get_task(envelope["task"])
    except UnknownTask:
        task = None
    requeue = bool(task and task.reject_on_worker_lost and name == WorkerLost.__name__)
    if requeue and delivery_cap.spent(job, deliveries):
        return delivery_cap.fail(job, deliveries, ran=True, exit_status=exit_status, task=task)
    lost: dict[str, Any] = {
        "exception_class": name,
        "exception_message": reason,
        "hostname": job.hostname,
        "exit_status": exit_status,
        "will_retry": requeue,
    }
    if task is not None:
        task.record_failure(envelope, error=None, **lost)
    else:
        result_store.record_failure(envelope, **lost)
    logger.error(
        "task=%s id=%s state=%s lost: %s",
        envelope["task"],
        job.task_id,
        "READY" if requeue else "FAILED",
        reason,
    )
    return Outcome(job.token, job.task_id, OutcomeKind.LOST, requeue=requeue, detail=reason)


class TaskExecutor:
    """The executor the worker hands its pool (see ``djworker.concurrency.executor``).

    ``run`` calls ``execute``, which records every error a task raises; an exception out of it
    means the worker could not do its own bookkeeping, and the policy for that lives here. If
    the database is unreachable, the job goes back to the broker (after a pause, so a worker
    whose database is down does not spin on redeliveries). Any other error would repeat on
    every delivery (a value the result table cannot store, say): the job is recorded FAILED as
    far as possible and not run again, and its whole envelope is logged.

    ``run_task`` replaces ``execute`` (tests run jobs that need no broker or database).
    """

    def __init__(self, *, run_task: Callable[[Job, LimitGuard], Outcome] | None = None) -> None:
        self._run_task = run_task or execute

    def run(self, job: Job, guard: LimitGuard) -> Outcome:
        try:
            return self._run_task(job, guard)
        except (OperationalError, InterfaceError) as exc:
            logger.error("id=%s database unavailable (%s); handing the task back", job.task_id, exc)
            time.sleep(DATABASE_DOWN_PAUSE_S)
            return Outcome(job.token, job.task_id, OutcomeKind.LOST, requeue=True, detail=str(exc))
        except Exception as exc:
            logger.exception(
                "id=%s task=%s could not be recorded; not run again. envelope=%r",
                job.task_id,
                job.envelope.get("task"),
                job.envelope,
            )
            try:
                result_store.record_unrecordable(job.envelope, exc)
            except Exception:
                # Still report an outcome: a job without one holds its slot in the prefetch
                # window for ever, and an exception here would end a threads-pool slot.
                logger.exception("id=%s its failure could not be recorded either", job.task_id)
            return Outcome(job.token, job.task_id, OutcomeKind.FAILED, detail=str(exc))

    def record_lost(
        self, job: Job, *, reason: str, exit_status: str = "", exception_class: str = ""
    ) -> Outcome:
        """``lost_outcome`` on a fresh connection; if that cannot be written, redeliver the job."""
        # The pool's own database use is treated like a request too: never a stale connection.
        close_old_connections()
        try:
            return lost_outcome(
                job, reason=reason, exit_status=exit_status, exception_class=exception_class
            )
        except Exception as exc:
            logger.exception("id=%s could not record the lost task; redelivering it", job.task_id)
            return Outcome(job.token, job.task_id, OutcomeKind.LOST, requeue=True, detail=str(exc))
        finally:
            close_old_connections()
