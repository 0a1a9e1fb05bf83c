"""The delivery cap: a message whose runs keep dying is failed instead of delivered forever.

A task that kills its own process (a crash in C, the OOM killer, ``os._exit``) never reaches its
acknowledgement, so with ``reject_on_worker_lost`` (or when it takes the whole worker with it)
the broker delivers it again, for ever. Each run that starts counts one delivery in the task's
result row (``TaskResult.deliveries``, written by the RUNNING mark's own statement), so the
count survives restarts of any worker. Once a message has started ``max_deliveries`` runs:

* a pool that saw the run die (prefork, the green pools) fails it at once, and
* any worker that receives it again fails it without running it (the only way left when the
  run took the whole worker down, as on the solo and threads pools).

Failing means: the row is FAILED with ``DeliveryLimitExceeded`` and a reason naming the cap and
the count, one ERROR line is logged, and the message is rejected, which RabbitMQ dead-letters
where the queue has a dead-letter exchange and every other broker drops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from djworker import result_store
from djworker.conf import WorkerSettings
from djworker.exceptions import DeliveryLimitExceeded
from djworker.job import Job, Outcome, OutcomeKind
from djworker.log_safety import get_logger

if TYPE_CHECKING:
    from djworker.task_definition import Task

logger = get_logger(__name__)


def cap_for(task: Task[Any, Any], settings: WorkerSettings) -> tuple[int, str]:
    """The cap for a message of ``task`` (0: none), and where it was set, for the reason."""
    if task.max_deliveries is not None:
        return task.max_deliveries, f"task {task.name!r} max_deliveries"
    layer = settings.sources.get("max_deliveries", "default")
    return settings.max_deliveries, f"worker max_deliveries, from {layer}"


def over(job: Job, deliveries: int) -> bool:
    """True when a run started as delivery number ``deliveries`` is one too many."""
    return bool(job.max_deliveries) and deliveries > job.max_deliveries


def spent(job: Job, deliveries: int) -> bool:
    """True when ``deliveries`` runs used up the cap: the message must not be delivered again."""
    return bool(job.max_deliveries) and deliveries >= job.max_deliveries


def fail(
    job: Job,
    deliveries: int,
    *,
    ran: bool,
    exit_status: str | None = None,
    task: Task[Any, Any] | None = None,
) -> Outcome:
    """Record the message FAILED for its delivery cap and ask the consumer to reject it.

    ``ran``: the last delivery ran (and its process died); otherwise this delivery was
    refused before running. ``exit_status`` of the run that died; None keeps the row's.
    ``task``: recorded through it, as any failure of its runs is (a django.tasks task keeps
    its ``errors`` and sends ``task_finished``).
    """
    if ran:
        reason = (
            f"the run died on delivery {deliveries}, the last of max_deliveries="
            f"{job.max_deliveries} ({job.max_deliveries_from})"
        )
    else:
        reason = (
            f"not run: delivery {deliveries} is over max_deliveries={job.max_deliveries} "
            f"({job.max_deliveries_from}); its earlier runs never finished"
        )
    failure: dict[str, Any] = {
        "exception_class": DeliveryLimitExceeded.__name__,
        "exception_message": reason,
        "hostname": job.hostname,
        "exit_status": exit_status,
    }
    if task is not None:
        task.record_failure(job.envelope, error=None, **failure)
    else:
        result_store.record_failure(job.envelope, **failure)
    logger.error(
        "task=%s id=%s state=FAILED %s; message rejected (dead-lettered if its queue has a "
        "dead-letter exchange, else dropped)",
        job.envelope["task"],
        job.task_id,
        reason,
    )
    return Outcome(job.token, job.task_id, OutcomeKind.FAILED, reject=True, detail=reason)
