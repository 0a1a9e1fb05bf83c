"""Worker names: who may use a name (``claim``), and the ``-n/--hostname`` templates.

The templates themselves (placeholders, ``expand``) are in ``djworker.name_templates``, which
reads no table, so the option parsers can check a template; they are imported here for the
callers that name a worker. The default is ``djworker@%h``: a worker restarted on the same
host takes over its row instead of adding one.
"""

from __future__ import annotations

import os
from datetime import timedelta

from django.utils import timezone

from djworker.exceptions import ConfigurationError
from djworker.name_templates import (
    BUSY_DEFAULT_TEMPLATE,
    DEFAULT_TEMPLATE,
    PLACEHOLDERS,
    expand,
    template_error,
)

__all__ = [
    "BUSY_DEFAULT_TEMPLATE",
    "DEFAULT_TEMPLATE",
    "PLACEHOLDERS",
    "claim",
    "expand",
    "holder",
    "template_error",
]


def _alive_here(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder(name: str) -> int | None:
    """The pid of another live worker process on this host using ``name``, if any.

    A row whose process is gone (killed, crashed) can be taken over at once, whatever its
    heartbeat says: that is how a restarted worker reuses its row.
    """
    from djworker.models import Worker, WorkerState
    from djworker.models.workers import STALE_AFTER_INTERVALS

    row = (
        Worker.objects.filter(hostname=name, state=WorkerState.ONLINE)
        .values_list("pid", "last_heartbeat", "heartbeat_interval_s")
        .first()
    )
    if row is None:
        return None
    pid, last_heartbeat, interval_s = row
    fresh = timezone.now() - last_heartbeat < timedelta(seconds=interval_s * STALE_AFTER_INTERVALS)
    return pid if fresh and _alive_here(pid) else None


def claim(name: str, *, explicit: bool) -> str:
    """The name this worker will use: ``name``, unless a live worker here already has it.

    An explicit ``-n`` in use is refused; the default falls back to a name with the pid.
    """
    pid = holder(name)
    if pid is None:
        return name
    if explicit:
        raise ConfigurationError(
            f"-n/--hostname {name!r} is in use by a running worker (pid {pid}) on this host; "
            "give each worker its own name, e.g. -n worker2@%h"
        )
    return expand(BUSY_DEFAULT_TEMPLATE)
