"""Which registered task a message names, and how a message naming none is recorded.

An ``@djworker.task`` runs only if this process registered it: a message naming anything else is
refused with ``UnknownTask``. A django.tasks message (one with a ``django_task`` field) names its
task by ``module_path``, as Django itself does, so a worker that has not registered it imports
that path, as Django's own executors would, within one limit: the module must belong to an
installed app. The imported object must then be a django.tasks task accepted by a djworker
backend (importing it registers it); nothing else ever runs.

When the import fails (the deploy the worker runs no longer has the module or the function, or
the module raises on import), the refusal carries the import error, so the result is FAILED with
that exception's class path and traceback and the worker carries on.
"""

from __future__ import annotations

import traceback as traceback_module
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from django.apps import apps
from django.utils.module_loading import import_string

from djworker.exceptions import UnknownTask
from djworker.task_definition import Task, get_task, registry

if TYPE_CHECKING:
    from djworker.backend_runner import FrameworkTask
    from djworker.message import Envelope


def task_for_message(envelope: Envelope) -> Task[Any, Any]:
    """The registered task an envelope names; ``UnknownTask`` (from the import error) if none."""
    name = envelope["task"]
    try:
        return get_task(name)
    except UnknownTask:
        if "django_task" not in envelope:
            raise
    return framework_task(name)


def framework_task(name: str) -> FrameworkTask:
    """The django.tasks task registered as ``name``, imported if it is not yet (see above)."""
    from djworker.backend_runner import FrameworkTask

    registered = registry.get(name)
    if isinstance(registered, FrameworkTask):
        return registered
    module = name.rpartition(".")[0]
    if not _in_an_installed_app(module):
        raise UnknownTask(
            f"task {name!r} is not registered in this worker, and its module {module!r} "
            "belongs to no installed app, so it is not imported"
        )
    try:
        imported = import_string(name)
    except (Exception, SystemExit) as exc:  # a module that exits on import must not stop us
        raise UnknownTask(f"task {name!r} could not be imported: {exc!r}") from exc
    registered = registry.get(name)
    backend = _worker_backend_of(imported, name) if registered is None else None
    if backend is not None:
        # Imported while TASKS named another backend for it, or dropped from the registry.
        backend.register_for_workers(imported)
        registered = registry.get(name)
    if not isinstance(registered, FrameworkTask):
        raise UnknownTask(
            f"task {name!r} imports, but is not a django.tasks task of a djworker backend"
        )
    return registered


@runtime_checkable
class RegistersForWorkers(Protocol):
    """A djworker backend (``djworker.backend.WorkerBackend``), seen from here."""

    def register_for_workers(self, task: Any) -> None: ...


def _worker_backend_of(value: Any, name: str) -> RegistersForWorkers | None:
    """The djworker backend of ``value`` if it is a django.tasks task named ``name``."""
    from djworker.tasks_framework import InvalidTaskBackend
    from djworker.tasks_framework import Task as FrameworkTaskDefinition

    if not isinstance(value, FrameworkTaskDefinition) or value.module_path != name:
        return None
    try:
        backend = value.get_backend()
    except InvalidTaskBackend:
        return None
    return backend if isinstance(backend, RegistersForWorkers) else None


def _in_an_installed_app(module: str) -> bool:
    return any(
        module == config.name or module.startswith(config.name + ".")
        for config in apps.get_app_configs()
    )


def refusal(exc: BaseException) -> dict[str, str]:
    """The fields ``result_store.record_refused`` writes for a message refused with ``exc``.

    A task that could not be imported is recorded with its import error: the error's class path
    and traceback, as a failed run is.
    """
    cause = exc.__cause__ if isinstance(exc, UnknownTask) else None
    if cause is None:
        return {"reason": str(exc), "exception_class": type(exc).__name__, "traceback": ""}
    return {
        "reason": str(exc),
        "exception_class": f"{type(cause).__module__}.{type(cause).__qualname__}",
        "traceback": "".join(traceback_module.format_exception(cause)),
    }
