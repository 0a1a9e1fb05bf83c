"""Worker and task lifecycle signals.

Task signals are sent from the process that runs the task (a prefork child, for example), with
``sender`` the ``Task``. A receiver that raises is logged and never changes a task's outcome.
"""

from __future__ import annotations

from typing import Any

from django.dispatch import Signal

from djworker.log_safety import get_logger

logger = get_logger(__name__)

#: before the function runs: task, task_id, args, kwargs
task_prerun = Signal()
#: after it returned or raised: task, task_id, status
task_postrun = Signal()
#: it returned: task, task_id, result
task_success = Signal()
#: it raised and will not be retried: task, task_id, exception, traceback
task_failure = Signal()
#: it raised and will run again: task, task_id, exception, countdown_s
task_retry = Signal()
#: the worker consumes: sender=Worker
worker_ready = Signal()
#: the worker is about to exit: sender=Worker
worker_shutdown = Signal()
#: a new pool process started (prefork), in that process
worker_process_init = Signal()


def send_robust(signal: Signal, sender: Any, **kwargs: Any) -> None:
    for receiver, response in signal.send_robust(sender, **kwargs):
        if isinstance(response, Exception):
            logger.error(
                "signal receiver %r raised; the task's outcome is unchanged",
                receiver,
                exc_info=(type(response), response, response.__traceback__),
            )
