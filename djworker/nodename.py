"""Worker names: ``-n/--hostname`` templates and who may use a name.

Templates take Celery's placeholders: ``%h`` (this host's name, e.g. ``web-1.example.com``),
``%n`` (its first label, ``web-1``), ``%d`` (the rest, ``example.com``), ``%i`` (the process
id) and ``%%`` (a percent sign). The default is ``djworker@%h``: a worker restarted on the same
host takes over its row instead of adding one.
"""

from __future__ import annotations

import os
import re
import socket
from datetime import timedelta

from django.utils import timezone

from djworker.exceptions import ConfigurationError

DEFAULT_TEMPLATE = "djworker@%h"
#: the name a second default-named worker on the same host falls back to
BUSY_DEFAULT_TEMPLATE = "djworker.%i@%h"
_PLACEHOLDER = re.compile(r"%(.?)")
PLACEHOLDERS = "%h, %n, %d, %i or %%"


def template_error(template: str) -> str:
    """Why ``template`` is not a valid name template, or ""."""
    for found in _PLACEHOLDER.finditer(template):
        if found[1] not in ("h", "n", "d", "i", "%"):
            return (
                f"worker names take the placeholders {PLACEHOLDERS}; got {found[0]!r} in "
                f"{template!r}"
            )
    return ""


def expand(template: str, *, host: str | None = None, pid: int | None = None) -> str:
    """``template`` with its placeholders replaced (see the module docstring)."""
    error = template_error(template)
    if error:
        raise ConfigurationError(error)
    host = host if host is not None else socket.gethostname()
    name, _, domain = host.partition(".")
    values = {"h": host, "n": name, "d": domain, "i": str(os.getpid() if pid is None else pid)}
    return _PLACEHOLDER.sub(lambda m: "%" if m[1] == "%" else values[m[1]], template)


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
