"""``WorkerBackend``: djworker as a backend of Django's Tasks framework.

    TASKS = {"default": {"BACKEND": "djworker.backend.WorkerBackend", "QUEUES": ["default"]}}

The same class serves ``django.tasks`` (Django 6.x) and the ``django-tasks`` backport (Django
5.2). A django.tasks task goes through the same broker, queues, pools, ``TaskResult`` rows,
admin and controls as an ``@djworker.task``; see docs/django-tasks.md.

Creating the backend reads its settings only: Django creates it when a ``@task`` decorator runs,
at import time, possibly before the app registry is ready. Models, the broker and the database
are touched on first use.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.db import DatabaseError, router, transaction
from django.utils import timezone

from djworker.backend_task import WorkerTask, broker_priority
from djworker.conf import DEFAULT_QUEUE
from djworker.log_safety import get_logger
from djworker.message import Envelope
from djworker.option_values import queue_name_error
from djworker.tasks_framework import (
    BaseTaskBackend,
    InvalidTask,
    InvalidTaskBackend,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
)

logger = get_logger(__name__)

#: OPTIONS keys and their defaults
DEFAULT_OPTIONS: dict[str, Any] = {"ENQUEUE_ON_COMMIT": True}


class WorkerBackend(BaseTaskBackend):
    """Publishes django.tasks tasks to djworker's broker; ``manage.py runworker`` runs them.

    OPTIONS: ``ENQUEUE_ON_COMMIT`` (default True): inside ``transaction.atomic()`` the result
    row is written in the transaction and the message is published when it commits, never if
    it rolls back. False publishes at once, like ``@djworker.task``'s ``delay()``.
    """

    task_class = WorkerTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        if not isinstance(self.options, dict):
            raise InvalidTaskBackend(
                f"TASKS[{alias!r}]['OPTIONS'] must be a dict; got {type(self.options).__name__}"
            )
        unknown = sorted(set(self.options) - set(DEFAULT_OPTIONS))
        if unknown:
            raise InvalidTaskBackend(
                f"TASKS[{alias!r}]['OPTIONS'] has unknown keys {unknown}; "
                f"known keys: {', '.join(DEFAULT_OPTIONS)}"
            )
        on_commit = self.options.get("ENQUEUE_ON_COMMIT", DEFAULT_OPTIONS["ENQUEUE_ON_COMMIT"])
        if not isinstance(on_commit, bool):
            raise InvalidTaskBackend(
                f"TASKS[{alias!r}]['OPTIONS']['ENQUEUE_ON_COMMIT'] must be True or False; "
                f"got {on_commit!r}"
            )
        self.enqueue_on_commit = on_commit

    def validate_task(self, task: Task) -> None:  # type: ignore[type-arg]
        """Django's rules, then djworker's queue-name rule; an accepted task is registered."""
        super().validate_task(task)
        if error := queue_name_error(task.queue_name):
            raise InvalidTask(f"Queue {task.queue_name!r} is not valid for djworker: {error}.")
        self.register_for_workers(task)

    def register_for_workers(self, task: Task) -> None:  # type: ignore[type-arg]
        """Make ``task`` runnable by djworker's workers, without validating it again.

        ``task_lookup`` calls it for a task imported while ``TASKS`` named another backend.
        """
        from djworker.backend_runner import register

        register(task, fallback_sender=WorkerBackend)

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:  # type: ignore[type-arg]
        from djworker import message, result_store

        self.validate_task(task)
        now = timezone.now()
        # Building the result normalises the arguments (TypeError "Unsupported type ...").
        result: TaskResult = TaskResult(  # type: ignore[type-arg]
            task=task,
            id=str(uuid.uuid4()),
            status=TaskResultStatus.READY,
            enqueued_at=now,
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=args,
            kwargs=kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        # djworker's rule on top: what the task receives equals what was passed.
        message.ensure_json(result.args, result.kwargs)
        envelope = message.build(
            task_id=result.id,
            task_name=task.module_path,
            args=result.args,
            kwargs=result.kwargs,
            queue=task.queue_name,
            priority=broker_priority(task.priority),
            eta=task.run_after,
            enqueued_at=now,
        )
        envelope["django_task"] = {"backend": self.alias, "priority": int(task.priority)}
        result_store.record_enqueued(envelope, backend=self.alias, task_priority=int(task.priority))
        if self.enqueue_on_commit:
            from djworker.models.results import TaskResult as ResultRow

            transaction.on_commit(
                lambda: self._publish(envelope, result), using=router.db_for_write(ResultRow)
            )
        else:
            self._publish(envelope, result)
        return result

    def _publish(self, envelope: Envelope, result: TaskResult) -> None:  # type: ignore[type-arg]
        from djworker import broker, result_store
        from djworker.backend_runner import send

        try:
            broker.get_broker().publish(envelope)
        except Exception:
            result_store.forget(envelope["id"])
            raise
        send(task_enqueued, result, fallback_sender=WorkerBackend)

    def get_result(self, result_id: str) -> TaskResult:  # type: ignore[type-arg]
        from djworker import message
        from djworker.backend_results import to_task_result
        from djworker.exceptions import UnknownTask
        from djworker.models.results import TaskResult as ResultRow
        from djworker.task_lookup import framework_task

        if (
            not isinstance(result_id, str)
            or not 0 < len(result_id) <= message.MAX_LENGTHS["id"]
            or message.unstorable(result_id) is not None  # no row can have it as its id
        ):
            raise TaskResultDoesNotExist(result_id)
        row = ResultRow.objects.filter(id=result_id, backend=self.alias).first()
        if row is None:
            raise TaskResultDoesNotExist(result_id)
        try:
            registered = framework_task(row.task_name)
        except UnknownTask as exc:
            # A TaskResult needs its Task: a result whose task no longer imports has none.
            raise TaskResultDoesNotExist(f"{result_id}: {exc}") from exc
        return to_task_result(row, registered.task_for_row(row))

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        """Configuration mistakes a worker would only meet later (ids djworker.E010-E012, W010)."""
        return list(self._check())

    def _check(self) -> Iterable[checks.CheckMessage]:
        if not apps.is_installed("djworker"):
            yield checks.Error(
                f"TASKS[{self.alias!r}] uses djworker.backend.WorkerBackend, but djworker is not "
                "in INSTALLED_APPS",
                hint="Add 'djworker' to INSTALLED_APPS.",
                id="djworker.E010",
            )
            return
        yield from self._check_broker()
        for name in sorted(self.queues):
            if error := queue_name_error(name):
                yield checks.Error(
                    f"TASKS[{self.alias!r}]['QUEUES'] has a name djworker cannot use: {error}",
                    id="djworker.E012",
                )
        consumed = self._consumed_queues()
        unconsumed = sorted(self.queues - consumed) if consumed is not None else []
        if consumed is not None and unconsumed:
            yield checks.Warning(
                f"TASKS[{self.alias!r}]['QUEUES'] lists {unconsumed}, which no worker consumes "
                f"by settings.DJWORKER['QUEUES'] or a worker profile "
                f"(consumed: {sorted(consumed)})",
                hint="Start a worker with --queues naming them, or add them to a profile; "
                "silence djworker.W010 if workers get them on the command line.",
                id="djworker.W010",
            )

    def _check_broker(self) -> Iterable[checks.CheckMessage]:
        # Read raw: djworker.E001 reports a bad DJWORKER setting as such; this says which
        # TASKS backend it breaks.
        djworker_settings = getattr(settings, "DJWORKER", {})
        if not isinstance(djworker_settings, dict):
            return
        from djworker.conf import DEFAULT_BROKER_URL, OPTIONS_BY_FIELD

        url = os.environ.get(OPTIONS_BY_FIELD["broker_url"].env_var) or djworker_settings.get(
            "BROKER_URL", DEFAULT_BROKER_URL
        )
        options = djworker_settings.get("BROKER_TRANSPORT_OPTIONS") or {}
        if not str(url).startswith("django:") or not isinstance(options, dict):
            return
        database = options.get("database", "default")
        if database not in settings.DATABASES:
            yield checks.Error(
                f"TASKS[{self.alias!r}] publishes through the django:// broker on database "
                f"{database!r}, which is not in DATABASES "
                f"(known: {', '.join(sorted(settings.DATABASES))})",
                hint="Set DJWORKER['BROKER_TRANSPORT_OPTIONS']['database'] to a DATABASES alias.",
                id="djworker.E011",
            )

    def _consumed_queues(self) -> set[str] | None:
        """Queues some worker consumes by configuration; None if that cannot be known."""
        from djworker.conf import SettingsError, read_settings

        try:
            consumed = set(read_settings().get("queues", (DEFAULT_QUEUE,)))
        except SettingsError:
            return None
        try:
            from djworker.models.workers import WorkerProfile

            for queues in WorkerProfile.objects.values_list("queues", flat=True):
                consumed.update(q.strip() for q in queues.split(",") if q.strip())
        except DatabaseError:
            pass  # no database (yet): the settings alone decide
        return consumed
