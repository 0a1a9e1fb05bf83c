"""The pool registry: every built-in pool by alias, and what is derived from it.

Each list of pools a message, a help text or the admin shows is computed here from the alias
map and the pools' capability flags, so a new pool (or alias) is added in one place. Reading a
pool's flags imports its djworker module only: billiard, gevent and eventlet are imported when
a pool is built (``djworker.concurrency.resolve_pool`` checks that they are installed).
"""

from __future__ import annotations

import importlib

from djworker.concurrency.capabilities import PoolCapabilities

#: alias -> (dotted path, the package it needs or "", what to ``pip install`` to get that package)
POOLS: dict[str, tuple[str, str, str]] = {
    "solo": ("djworker.concurrency.solo:SoloPool", "", ""),
    "threads": ("djworker.concurrency.threads:ThreadPool", "", ""),
    "prefork": ("djworker.concurrency.prefork:PreforkPool", "billiard", "billiard"),
    "processes": ("djworker.concurrency.prefork:PreforkPool", "billiard", "billiard"),
    "gevent": ("djworker.concurrency.gevent:GeventPool", "gevent", "djworker[gevent]"),
    "eventlet": ("djworker.concurrency.eventlet:EventletPool", "eventlet", "djworker[eventlet]"),
}
#: pools a profile may name besides the classes of ``settings.DJWORKER["CUSTOM_POOLS"]``
PROFILE_POOLS = tuple(POOLS)


def builtin_class(alias: str) -> type[PoolCapabilities]:
    """The class of a built-in pool, for its capability flags; its third-party package is not
    imported (nor checked: use ``resolve_pool`` to run the pool)."""
    module_name, _, attr = POOLS[alias][0].partition(":")
    pool_class: type[PoolCapabilities] = getattr(importlib.import_module(module_name), attr)
    return pool_class


def builtin_class_of(name: str) -> type[PoolCapabilities] | None:
    """The class behind a built-in alias, or None for anything else (custom pools)."""
    return builtin_class(name) if name in POOLS else None


def canonical(alias: str) -> str:
    """The first alias of the same pool (``prefork`` for ``processes``)."""
    path = POOLS[alias][0]
    return next(name for name, entry in POOLS.items() if entry[0] == path)


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
