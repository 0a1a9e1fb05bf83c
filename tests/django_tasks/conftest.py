"""Shared ground for the django.tasks conformance suite: recorders and an in-process executor.

The suite needs Django 6's ``django.tasks`` or the ``django-tasks`` backport (Django 5.2,
``pip install "djworker[tasks]"``); without either it is skipped as a whole.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

if not (importlib.util.find_spec("django.tasks") or importlib.util.find_spec("django_tasks")):
    collect_ignore_glob = ["test_*.py"]


@dataclass
class Sent:
    signal: str
    sender: Any
    status: str
    result_id: str
    worker_ids: list[str]
    errors: list[str]


@dataclass
class SignalRecorder:
    """Every django.tasks signal sent in this process, with a snapshot of its result."""

    sent: list[Sent] = field(default_factory=list)

    def names(self, result_id: str | None = None) -> list[str]:
        return [s.signal for s in self.sent if result_id in (None, s.result_id)]


@pytest.fixture
def signal_recorder() -> Iterator[SignalRecorder]:
    from djworker.tasks_framework import task_enqueued, task_finished, task_started

    recorder = SignalRecorder()
    receivers = []
    for name, signal in (
        ("task_enqueued", task_enqueued),
        ("task_started", task_started),
        ("task_finished", task_finished),
    ):

        def receive(sender: Any, task_result: Any, _name: str = name, **kwargs: Any) -> None:
            recorder.sent.append(
                Sent(
                    _name,
                    sender,
                    str(task_result.status),
                    task_result.id,
                    list(task_result.worker_ids),
                    [e.exception_class_path for e in task_result.errors],
                )
            )

        signal.connect(receive, weak=False)
        receivers.append((signal, receive))
    yield recorder
    for signal, receive in receivers:
        signal.disconnect(receive)


def run_in_process(result_id: str, *, hostname: str = "inprocess@test", **job: Any) -> Any:
    """Run a stored call with djworker's own executor in this process, as a pool slot would."""
    from djworker import message
    from djworker.execution import execute
    from djworker.job import Job
    from djworker.models.results import TaskResult

    row = TaskResult.objects.get(id=result_id)
    envelope = message.build(
        task_id=row.id,
        task_name=row.task_name,
        args=row.args,
        kwargs=row.kwargs,
        queue=row.queue,
        priority=row.priority,
        enqueued_at=row.enqueued_at,
        attempt=max(row.attempts, 0),
    )
    return execute(Job(1, envelope, hostname=hostname, **job))
