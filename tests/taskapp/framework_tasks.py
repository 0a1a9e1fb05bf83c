"""django.tasks tasks the conformance suite (tests/django_tasks/) runs through WorkerBackend.

Imported by ``tasks.py`` when the framework is installed, so autodiscover registers them in
every process, workers included.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from djworker.tasks_framework import (
    TaskContext,
    task,
    task_enqueued,
    task_finished,
    task_started,
)

#: Django 6.0's ``@task`` takes no extras; 6.1 and the backport hand them to ``task_class``
TASK_TAKES_EXTRAS = any(
    parameter.kind is inspect.Parameter.VAR_KEYWORD
    for parameter in inspect.signature(task).parameters.values()
)


#: for the tests of djworker's extras on django.tasks tasks
needs_task_extras = pytest.mark.skipif(
    not TASK_TAKES_EXTRAS, reason="Django 6.0's @task takes no extras (6.1 and the backport do)"
)


def task_with_extras(**extras: Any) -> Any:
    """``@task(**extras)``; on Django 6.0 a plain ``@task()``, whose tests are skipped there."""
    return task(**extras) if TASK_TAKES_EXTRAS else task()


@task
def noop() -> None:
    return None


@task()
async def noop_async() -> None:
    await asyncio.sleep(0)


@task
def calculate_meaning_of_life() -> int:
    return 42


@task
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@task
async def add_async(x: int, y: int) -> int:
    await asyncio.sleep(0)
    return x + y


@task
def failing_value_error(message: str = "boom") -> None:
    raise ValueError(message)


@task
def failing_system_exit() -> None:
    sys.exit(3)


@task
def failing_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


@task
def complex_return_value() -> Any:
    return {"tuple": (1, 2), "nested": [{"x": b"bytes"}], 1: "int key"}


@task
def unserialisable_return_value() -> Any:
    return object()


@task(takes_context=True)
def context_report(context: TaskContext) -> dict[str, Any]:
    result = context.task_result
    return {
        "id": result.id,
        "attempt": context.attempt,
        "status": str(result.status),
        "worker_ids": list(result.worker_ids),
    }


@task(priority=50, queue_name="default")
def high_priority() -> str:
    return "high"


@task_with_extras(max_retries=2, default_retry_delay=0.1, retry_jitter=False)
def fail_until(marker_dir: str, succeed_on_attempt: int) -> int:
    """Fails until its run number reaches ``succeed_on_attempt`` (counted in ``marker_dir``)."""
    runs = len(list(Path(marker_dir).iterdir())) + 1
    (Path(marker_dir) / f"run-{runs}").touch()
    if runs < succeed_on_attempt:
        raise ConnectionError(f"run {runs} fails")
    return runs


@task_with_extras(time_limit=1.0)
def sleep_past_limit(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task
def record_order(path: str, label: str) -> str:
    with open(path, "a") as out:
        out.write(label + "\n")
    return label


@task(takes_context=True)
def block_until_killed(context: TaskContext, marker: str) -> int:
    """The first run writes ``marker`` and blocks (the test kills its worker); later runs return."""
    if not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        time.sleep(120)
    return context.attempt


@task_with_extras(redact_args=True)
def redacted_echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Its result row shows no argument value; the task still gets them."""
    return {"args": list(args), "kwargs": kwargs}


@task_with_extras(max_deliveries=1)
def capped_block_until_killed(marker: str) -> str:
    """Like ``block_until_killed``, with a cap of one delivery: a second one is never run."""
    if not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        time.sleep(120)
    return "ran again"


def _log_signal(name: str) -> Any:
    def receive(sender: Any, task_result: Any, **kwargs: Any) -> None:
        path = os.environ.get("DJWORKER_TEST_SIGNAL_LOG")
        if path:
            sender_path = f"{sender.__module__}.{sender.__qualname__}"
            line = f"{name} {sender_path} {task_result.status} {task_result.id} {os.getpid()}\n"
            with open(path, "a") as out:  # one short append per line: lines never interleave
                out.write(line)

    return receive


# Workers started by the tests log every django.tasks signal they send to a file.
_receivers = [_log_signal(n) for n in ("task_enqueued", "task_started", "task_finished")]
task_enqueued.connect(_receivers[0])
task_started.connect(_receivers[1])
task_finished.connect(_receivers[2])
