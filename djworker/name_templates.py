"""Worker name templates for ``-n/--hostname``: their placeholders, checked and expanded.

Templates take Celery's placeholders: ``%h`` (this host's name, e.g. ``web-1.example.com``),
``%n`` (its first label, ``web-1``), ``%d`` (the rest, ``example.com``), ``%i`` (the process
id) and ``%%`` (a percent sign). Pure functions: who may use a name is ``djworker.nodename``'s.
"""

from __future__ import annotations

import os
import re
import socket

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
