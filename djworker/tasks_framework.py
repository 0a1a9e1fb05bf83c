"""Django's Tasks framework, imported once: ``django.tasks`` (Django 6.x) or the backport.

On Django 5.2 the framework comes from the ``django-tasks`` backport (``pip install
"djworker[tasks]"``, module ``django_tasks``). The two spell a few exception names differently
(``InvalidTask`` / ``InvalidTaskError``); this module gives djworker one set of names, so the
backend never branches on the Django version anywhere else.
"""

from __future__ import annotations

try:
    from django.tasks import (
        DEFAULT_TASK_QUEUE_NAME,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        default_task_backend,
        task,
        task_backends,
    )
    from django.tasks import checks as _checks
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import (
        TASK_MAX_PRIORITY,
        TASK_MIN_PRIORITY,
        Task,
        TaskError,
    )
    from django.tasks.exceptions import (
        InvalidTask,
        InvalidTaskBackend,
        TaskResultDoesNotExist,
        TaskResultMismatch,
    )
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json

    FRAMEWORK = "django.tasks"
except ImportError:
    try:
        from django_tasks import (  # type: ignore[assignment, no-redef, unused-ignore]
            DEFAULT_TASK_QUEUE_NAME,
            TaskContext,
            TaskResult,
            TaskResultStatus,
            default_task_backend,
            task,
            task_backends,
        )
    except ImportError as exc:
        raise ImportError(
            "djworker.backend.WorkerBackend needs Django 6's django.tasks or, on Django 5.2, "
            f'the django-tasks backport: pip install "djworker[tasks]" ({exc})'
        ) from exc
    from django_tasks import checks as _checks  # type: ignore[assignment, no-redef, unused-ignore]  # noqa: F401
    from django_tasks.backends.base import BaseTaskBackend  # type: ignore[assignment, no-redef, unused-ignore]
    from django_tasks.base import (  # type: ignore[assignment, no-redef, unused-ignore]
        TASK_MAX_PRIORITY,
        TASK_MIN_PRIORITY,
        Task,
        TaskError,
    )
    from django_tasks.exceptions import (  # type: ignore[assignment, no-redef, unused-ignore]
        InvalidTaskBackendError as InvalidTaskBackend,
    )
    from django_tasks.exceptions import (  # type: ignore[assignment, no-redef, unused-ignore]
        InvalidTaskError as InvalidTask,
    )
    from django_tasks.exceptions import (  # type: ignore[assignment, no-redef, unused-ignore]
        TaskResultDoesNotExist,
        TaskResultMismatch,
    )
    from django_tasks.signals import (  # type: ignore[assignment, no-redef, unused-ignore]
        task_enqueued,
        task_finished,
        task_started,
    )
    from django_tasks.utils import normalize_json  # type: ignore[assignment, no-redef, unused-ignore]

    FRAMEWORK = "django_tasks"


def exception_class_path(exc: BaseException) -> str:
    """The dotted path of an exception's class, as ``TaskError.exception_class_path`` has it."""
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


__all__ = [
    "DEFAULT_TASK_QUEUE_NAME",
    "FRAMEWORK",
    "TASK_MAX_PRIORITY",
    "TASK_MIN_PRIORITY",
    "BaseTaskBackend",
    "InvalidTask",
    "InvalidTaskBackend",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultMismatch",
    "TaskResultStatus",
    "default_task_backend",
    "exception_class_path",
    "normalize_json",
    "task",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]
