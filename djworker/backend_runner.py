"""Running a django.tasks task in a worker: its entry in djworker's task registry.

``WorkerBackend.validate_task`` registers every django.tasks task it accepts, under its
``module_path``, as a ``FrameworkTask``. Validation happens when the task is defined, i.e. when
``AppConfig.ready()`` autodiscovers the app's ``tasks.py``, so a worker knows the same tasks as
for ``@djworker.task`` and never imports a path taken from a message.

A ``FrameworkTask`` is a djworker ``Task``: the consumer, the pools, ``execute()``, retries,
limits and controls treat it like any other. It overrides only how a run is called and recorded,
to keep the django.tasks fields (``worker_ids``, ``errors``, ``last_attempted_at``, the first
``started_at``) and to send Django's ``task_started`` / ``task_finished`` signals, with the
backend class as sender, after each write.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
from datetime import datetime
from typing import Any

from django.core.signals import setting_changed
from django.db import DatabaseError
from django.dispatch import receiver
from django.utils import timezone

from djworker import green, message, result_store, signals
from djworker.backend_results import error_entry, to_task_result, update
from djworker.backend_task import broker_priority, extras_of
from djworker.concurrency.green_library import GreenLibrary
from djworker.conf import default_hostname
from djworker.exceptions import ConfigurationError
from djworker.log_safety import get_logger
from djworker.message import Envelope
from djworker.models.results import TaskResult as ResultRow
from djworker.models.results import TaskStatus
from djworker.task_definition import Task as NativeTask
from djworker.task_definition import registry
from djworker.tasks_framework import (
    InvalidTask,
    InvalidTaskBackend,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultStatus,
    normalize_json,
    task_finished,
    task_started,
)

logger = get_logger(__name__)


def register(task: Task, *, fallback_sender: type) -> None:  # type: ignore[type-arg]
    """Make ``task`` runnable by workers; raise ``InvalidTask`` if djworker cannot run it.

    ``fallback_sender``: the sender of its signals once ``TASKS`` no longer names its backend
    (``WorkerBackend``, passed by the backend so that this module need not import it).
    """
    name = task.module_path
    existing = registry.get(name)
    if isinstance(existing, FrameworkTask) and existing.task.func is task.func:
        return
    if existing is not None and not isinstance(existing, FrameworkTask):
        raise InvalidTask(
            f"Task name {name!r} is already used by @djworker.task "
            f"{existing.func.__module__}.{existing.func.__qualname__}."
        )
    if len(name) > message.MAX_LENGTHS["task"]:
        raise InvalidTask(
            f"Task path {name[:80]!r}... is {len(name)} characters long; "
            f"at most {message.MAX_LENGTHS['task']} are allowed."
        )
    try:
        registry[name] = FrameworkTask(task, fallback_sender=fallback_sender)
    except ConfigurationError as exc:
        raise InvalidTask(str(exc)) from None


#: backend alias -> its backend class, the sender of the signals (cleared when TASKS changes)
_senders: dict[str, type] = {}


def send(signal: Any, result: TaskResult, *, fallback_sender: type) -> None:  # type: ignore[type-arg]
    """Send a django.tasks signal as Django does (sender: the backend class), robustly.

    ``fallback_sender`` is the sender when ``TASKS`` no longer names the result's backend. A
    receiver that raises is logged and changes nothing: the outcome is already stored.
    """
    sender = _senders.get(result.backend)
    if sender is None:
        try:
            sender = type(result.task.get_backend())
        except InvalidTaskBackend:
            sender = fallback_sender
        _senders[result.backend] = sender
    signals.send_robust(signal, sender, task_result=result)


@receiver(setting_changed)
def _forget_backends(*, setting: str, **kwargs: Any) -> None:
    # Django makes new backends when TASKS changes (override_settings in tests): what was
    # worked out from the old ones goes too.
    if setting == "TASKS":
        _senders.clear()
        for entry in registry.values():
            if isinstance(entry, FrameworkTask):
                entry._variants.clear()


def _run_coroutine_green(library: GreenLibrary, func: Any, args: Any, kwargs: Any) -> Any:
    """Run an async task on a green pool: its event loop in a real OS thread of the library's.

    An asyncio loop in a greenlet (``async_to_sync`` runs it in a patched, green thread) can
    block the hub on its selector, and with it every run of the worker; in a real thread it
    blocks only that thread while this greenlet waits cooperatively.
    """
    return library.run_in_real_thread(lambda: asyncio.run(func(*args, **kwargs)))


class FrameworkTask(NativeTask[Any, Any]):
    """The registry entry for a django.tasks ``Task`` (``self.task``)."""

    def __init__(self, task: Task, *, fallback_sender: type) -> None:  # type: ignore[type-arg]
        super().__init__(
            task.func,
            name=task.module_path,
            priority=broker_priority(task.priority),
            **extras_of(task),
        )
        self.task = task
        #: the sender of its signals once ``TASKS`` no longer names its backend (see ``send``)
        self.fallback_sender = fallback_sender
        self._is_async = inspect.iscoroutinefunction(task.func)
        # The live TaskResult of each run in this process, from its start to its end: the
        # context a task receives, and what the signals carry. Keyed by result id.
        self._runs: dict[str, TaskResult] = {}  # type: ignore[type-arg]
        self._variants: dict[tuple[Any, ...], Task] = {}  # type: ignore[type-arg]

    def __repr__(self) -> str:
        return f"<FrameworkTask {self.name}>"

    # -- the run ---------------------------------------------------------------------------

    def invoke(self, envelope: Envelope) -> Any:
        args, kwargs = envelope["args"], envelope["kwargs"]
        result = self._runs.get(envelope["id"]) or self._load(envelope)
        # Sent here, right before the function, so a delivery refused after its RUNNING write
        # (over its delivery cap) sends no task_started.
        send(task_started, result, fallback_sender=self.fallback_sender)
        if self.task.takes_context:
            args = [TaskContext(task_result=result), *args]
        if self._is_async and green.patched_library is not None:
            value = _run_coroutine_green(green.patched_library, self.task.func, args, kwargs)
        else:
            value = self.task.call(*args, **kwargs)
        # As Django's own executor does: a value JSON cannot carry fails the run, here.
        return normalize_json(value)

    def record_started(
        self,
        envelope: Envelope,
        *,
        hostname: str,
        started_at: datetime,
        redelivered: bool = False,
        **counting: Any,
    ) -> int:
        # The first run of a fresh call finds no earlier start, worker or error in its row: the
        # message says all the row would, so it is not read (a round trip per task saved).
        fresh = envelope["attempt"] == 0 and not redelivered and "django_task" in envelope
        result = self._from_message(envelope) if fresh else self._load(envelope)
        first_start = result.started_at or started_at
        worker_ids = [*result.worker_ids, hostname or default_hostname()]
        deliveries = result_store.record_started(
            envelope,
            hostname=hostname,
            started_at=first_start,
            last_attempted_at=started_at,
            worker_ids=worker_ids,
            **counting,
        )
        update(
            result,
            status=TaskStatus.RUNNING,
            started_at=first_start,
            last_attempted_at=started_at,
            worker_ids=worker_ids,
            finished_at=None,
        )
        self._runs[envelope["id"]] = result
        return deliveries

    def record_success(self, envelope: Envelope, *, value: Any, **fields: Any) -> None:
        result = self._runs.pop(envelope["id"], None) or self._load(envelope)
        finished_at = timezone.now()
        result_store.record_success(
            envelope,
            value=value,
            **{**fields, "started_at": result.started_at, "finished_at": finished_at},
        )
        # What a reader of the row gets (JSON turns every key into a string).
        stored = json.loads(json.dumps(value)) if isinstance(value, dict | list) else value
        update(
            result,
            status=TaskStatus.SUCCESSFUL,
            finished_at=finished_at,
            _return_value=stored,
        )
        send(task_finished, result, fallback_sender=self.fallback_sender)

    def record_failure(
        self, envelope: Envelope, *, error: BaseException | None, **fields: Any
    ) -> None:
        result = self._runs.pop(envelope["id"], None) or self._load(envelope)
        entry = error_entry(
            error,
            exception_class=fields.get("exception_class", ""),
            message=fields.get("exception_message", ""),
        )
        errors = [
            *(
                {"exception_class_path": e.exception_class_path, "traceback": e.traceback}
                for e in result.errors
            ),
            entry,
        ]
        will_retry = bool(fields.get("will_retry"))
        finished_at = None if will_retry else timezone.now()
        if fields.get("started_at") is not None:
            fields["started_at"] = result.started_at
        result_store.record_failure(envelope, **fields, errors=errors, finished_at=finished_at)
        update(
            result,
            status=TaskStatus.READY if will_retry else TaskStatus.FAILED,
            finished_at=finished_at,
            errors=[TaskError(**e) for e in errors],
        )
        if not will_retry:
            send(task_finished, result, fallback_sender=self.fallback_sender)

    # -- the call as made ----------------------------------------------------------------

    def task_for(
        self, priority: int | None, queue: str, run_after: datetime | None, backend: str
    ) -> Task:  # type: ignore[type-arg]
        """The registered task as one call used it (``.using()`` values and backend alias).

        Variants without ``run_after`` are kept: validating a new one each run would cost more
        than the run of a small task.
        """
        task = self.task
        priority = task.priority if priority is None else priority
        backend = backend or task.backend
        key = (priority, queue, backend)
        if run_after is None:
            if key == (task.priority, task.queue_name, task.backend) and task.run_after is None:
                return task
            if (cached := self._variants.get(key)) is not None:
                return cached
        try:
            variant = dataclasses.replace(
                task, priority=priority, queue_name=queue, run_after=run_after, backend=backend
            )
        except (InvalidTask, InvalidTaskBackend) as exc:
            # A backend alias or queue this process does not accept: show the call with the
            # task as registered rather than fail the run on bookkeeping.
            logger.warning("task=%s shown as registered: %s", self.name, exc)
            return task
        if run_after is None:
            if len(self._variants) >= 256:
                self._variants.clear()
            self._variants[key] = variant
        return variant

    def task_for_row(self, row: ResultRow) -> Task:  # type: ignore[type-arg]
        return self.task_for(row.task_priority, row.queue, row.run_after, row.backend)

    def _from_message(self, envelope: Envelope) -> TaskResult:  # type: ignore[type-arg]
        """The READY result a fresh call's message describes (its row holds nothing more)."""
        framework = envelope["django_task"]
        run_after = message.parse_time(envelope.get("eta"), "eta")
        return TaskResult(
            task=self.task_for(
                framework["priority"], envelope["queue"], run_after, framework["backend"]
            ),
            id=envelope["id"],
            status=TaskResultStatus.READY,
            enqueued_at=message.parse_time(envelope.get("enqueued_at"), "enqueued_at"),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=envelope["args"],
            kwargs=envelope["kwargs"],
            backend=framework["backend"],
            errors=[],
            worker_ids=[],
        )

    # -- reading the row -------------------------------------------------------------------

    def _load(self, envelope: Envelope) -> TaskResult:  # type: ignore[type-arg]
        """The result as its row says (or as the message says, if there is no row yet)."""
        try:
            row = ResultRow.objects.filter(id=envelope["id"]).first()
        except DatabaseError:
            logger.warning("id=%s could not read its result row", envelope["id"], exc_info=True)
            row = None
        if row is None:
            row = result_store.unsaved_row(envelope, backend=self.task.backend)
            framework = envelope.get("django_task")
            if framework:
                row.backend, row.task_priority = framework["backend"], framework["priority"]
        return to_task_result(row, self.task_for_row(row))
