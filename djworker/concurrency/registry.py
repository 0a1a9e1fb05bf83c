"""The pool registry: every built-in pool by alias, and what is derived from it.

Each list of pools a message, a help text or the admin shows is computed here from the alias
map and the pools' capability flags, so a new pool (or alias) is added in one place. Reading a
pool's flags imports its djworker module only: billiard, gevent and eventlet are imported when
a pool is built (``djworker.concurrency.resolve_pool`` checks that they are installed).

An entry also holds what the worker profile form says of the pool and, for a green pool, the
library that patches the process (``green_library.py``). This module imports neither Django nor
a pool's package, since ``djworker.green`` reads it before Django is imported.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from djworker.concurrency.capabilities import PoolCapabilities
from djworker.concurrency.green_library import EVENTLET, GEVENT, GreenLibrary


@dataclass(frozen=True)
class PoolEntry:
    """One built-in pool: where its class is, what it needs, and what the admin says of it."""

    #: ``module:Class`` of the pool
    path: str
    #: the third-party package it needs ('' for none), imported only when the pool is built
    package: str = ""
    #: what to ``pip install`` to get that package
    requirement: str = ""
    #: the work it suits, as the worker profile form offers it (docs/pools.md has the reasons)
    guide: str = ""
    #: its place among the profile form's choices, lowest first
    guide_rank: int = 0
    #: the library that patches the process for it, for a green pool (``djworker.green``)
    green: GreenLibrary | None = None


_PREFORK = PoolEntry(
    "djworker.concurrency.prefork:PreforkPool",
    "billiard",
    "billiard",
    guide="prefork: CPU-bound work (parsing, images, number crunching); one process per core, "
    "and a crash takes down one child, not the worker",
    guide_rank=1,
)
#: alias -> its entry; a second alias of a pool shares the entry (``processes``)
POOLS: dict[str, PoolEntry] = {
    "solo": PoolEntry(
        "djworker.concurrency.solo:SoloPool",
        guide="solo: one task at a time in the main thread; debugging, one-task containers",
        guide_rank=4,
    ),
    "threads": PoolEntry(
        "djworker.concurrency.threads:ThreadPool",
        guide="threads: a few blocking calls (the database, some network); 4 to 16 slots",
        guide_rank=3,
    ),
    "prefork": _PREFORK,
    "processes": _PREFORK,
    "gevent": PoolEntry(
        "djworker.concurrency.gevent:GeventPool",
        "gevent",
        "djworker[gevent]",
        guide="gevent: many waits on the network (HTTP calls, e-mail, webhooks); hundreds of "
        "slots cost a few KiB each",
        guide_rank=2,
        green=GEVENT,
    ),
    "eventlet": PoolEntry(
        "djworker.concurrency.eventlet:EventletPool",
        "eventlet",
        "djworker[eventlet]",
        guide="eventlet: as gevent, for projects already built on eventlet (deprecated "
        "upstream; new projects use gevent)",
        guide_rank=5,
        green=EVENTLET,
    ),
}
#: pools a profile may name besides the classes of ``settings.DJWORKER["CUSTOM_POOLS"]``
PROFILE_POOLS = tuple(POOLS)
#: the pools whose process a green library patches, by every alias
GREEN_POOLS = tuple(alias for alias, entry in POOLS.items() if entry.green is not None)


def builtin_class(alias: str) -> type[PoolCapabilities]:
    """The class of a built-in pool, for its capability flags; its third-party package is not
    imported (nor checked: use ``resolve_pool`` to run the pool)."""
    module_name, _, attr = POOLS[alias].path.partition(":")
    pool_class: type[PoolCapabilities] = getattr(importlib.import_module(module_name), attr)
    return pool_class


def builtin_class_of(name: str) -> type[PoolCapabilities] | None:
    """The class behind a built-in alias, or None for anything else (custom pools)."""
    return builtin_class(name) if name in POOLS else None


def canonical(alias: str) -> str:
    """The first alias of the same pool (``prefork`` for ``processes``)."""
    path = POOLS[alias].path
    return next(name for name, entry in POOLS.items() if entry.path == path)


def aliases_with(capability: str) -> tuple[str, ...]:
    """Every alias (``processes`` too) whose pool has the capability flag set."""
    return tuple(alias for alias in POOLS if getattr(builtin_class(alias), capability))


def pools_with(capability: str) -> list[str]:
    """The built-in pools with the capability flag set, once each by their own name."""
    names: list[str] = []
    for alias in aliases_with(capability):
        name = builtin_class(alias).alias or alias
        if name not in names:
            names.append(name)
    return names


def spoken(names: list[str] | tuple[str, ...], conjunction: str = "or") -> str:
    """``a, b or c``: a list of pools as a sentence says it."""
    if len(names) < 2:
        return "".join(names) or "none"
    return f"{', '.join(names[:-1])} {conjunction} {names[-1]}"


def alias_names() -> str:
    """``solo, threads, prefork (alias processes), gevent, eventlet``: for help texts."""
    parts: dict[str, str] = {}
    for alias in POOLS:
        first = canonical(alias)
        parts[first] = alias if first == alias else f"{parts[first]} (alias {alias})"
    return ", ".join(parts.values())
