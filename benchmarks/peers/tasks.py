"""djworker's benchmark tasks (both APIs) and django-tasks-db's, found by Django's autodiscovery.

The django.tasks ones exist only where Django's Tasks framework is importable (Django 6, or
the ``django-tasks`` backport); django-tasks-db's only where it is installed (the bench extra).
"""

from __future__ import annotations

import importlib.util

import djworker
from benchmarks.peers.sink import record_wait


@djworker.task
def noop() -> None:
    return None


@djworker.task
def probe(key: str, sent_at: float) -> None:
    record_wait(key, sent_at)


if importlib.util.find_spec("django.tasks") or importlib.util.find_spec("django_tasks"):
    from djworker.tasks_framework import task

    @task
    def framework_noop() -> None:
        return None

    @task
    def framework_probe(key: str, sent_at: float) -> None:
        record_wait(key, sent_at)

    if importlib.util.find_spec("django_tasks_db"):

        @task(backend="tasksdb")
        def tasksdb_noop() -> None:
            return None

        @task(backend="tasksdb")
        def tasksdb_probe(key: str, sent_at: float) -> None:
            record_wait(key, sent_at)
