"""The tasks registered in this process, by name, as the result table needs to see them.

``djworker.task_definition`` fills this dict (``@task``, and django.tasks tasks through
``backend_runner.register``) and reads it as holding its ``Task`` objects. It lives here, apart
from them, so that the result store can ask how a task's arguments are stored without importing
the module that defines tasks, which itself writes through the result store.
"""

from __future__ import annotations

from typing import Any, Protocol

from djworker.message import Envelope


class StoresArguments(Protocol):
    """A registered task, as far as its result row is concerned."""

    def stored_arguments(
        self, args: list[Any], kwargs: dict[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]: ...


#: task name -> task; filled when an app's ``tasks.py`` is imported
tasks: dict[str, StoresArguments] = {}


def stored_arguments(envelope: Envelope) -> tuple[list[Any], dict[str, Any]]:
    """An envelope's arguments as the result table keeps them: redacted if its task says so."""
    args, kwargs = envelope.get("args", []), envelope.get("kwargs", {})
    name = envelope.get("task")
    task = tasks.get(name) if isinstance(name, str) else None
    return task.stored_arguments(args, kwargs) if task is not None else (args, kwargs)
