"""Finding a pool class by name: a built-in alias, ``custom`` or a dotted path.

Importing djworker never imports billiard, gevent or eventlet: aliases map to dotted paths that are
imported only when a worker asks for that pool.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import re
from collections.abc import Mapping
from typing import Any

from djworker.concurrency.base import BasePool
from djworker.concurrency.registry import POOLS, PROFILE_POOLS
from djworker.exceptions import ConfigurationError, PoolNotAvailable

CUSTOM_POOL_ENV = "DJWORKER_CUSTOM_POOL"
CUSTOM_POOLS_SETTING = "settings.DJWORKER['CUSTOM_POOLS']"
_DOTTED_CLASS = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*[:.][A-Za-z_]\w*")


def pool_choices() -> list[str]:
    return [*POOLS, "custom", "module.path:Class"]


def installed_pool_choices() -> list[str]:
    """The pool choices whose packages are installed here."""
    ready = [
        alias
        for alias, entry in POOLS.items()
        if not entry.package or importlib.util.find_spec(entry.package) is not None
    ]
    return [*ready, "custom", "module.path:Class"]


def custom_pools(djworker_settings: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The custom pool classes a profile may name: ``settings.DJWORKER["CUSTOM_POOLS"]``.

    Read from settings only, so the admin (which validates a profile) and the workers (which
    refuse a profile naming any other class) agree. Nothing is imported here.
    """
    if djworker_settings is None:
        from django.conf import settings

        djworker_settings = getattr(settings, "DJWORKER", {})
    if not isinstance(djworker_settings, Mapping):
        return ()
    value = djworker_settings.get("CUSTOM_POOLS", ())
    paths = list(value) if isinstance(value, list | tuple) else None
    if paths is None or not all(isinstance(p, str) and _DOTTED_CLASS.fullmatch(p) for p in paths):
        raise ConfigurationError(
            f"{CUSTOM_POOLS_SETTING} expects a list of 'module.path:Class' strings; got {value!r}"
        )
    return tuple(paths)


def profile_pool_error(pool: str, *, allowed: tuple[str, ...]) -> str:
    """Why a profile may not name ``pool``, or "" if it may; never imports anything.

    A profile names a built-in pool, or a custom class listed in ``CUSTOM_POOLS``.
    """
    if pool in PROFILE_POOLS or pool in allowed:
        return ""
    listed = ", ".join(allowed) if allowed else "none"
    if ":" in pool or "." in pool:
        return (
            f"pool {pool!r} is not one of the custom pools a profile may name "
            f"({CUSTOM_POOLS_SETTING}: {listed})"
        )
    return (
        f"unknown pool {pool!r}; choose one of {', '.join(PROFILE_POOLS)}, or a custom pool "
        f"from {CUSTOM_POOLS_SETTING} ({listed})"
    )


def resolve_pool(name: str) -> type[BasePool]:
    """Return the pool class for an alias, ``custom`` or a ``module:Class`` dotted path."""
    if name == "custom":
        path = os.environ.get(CUSTOM_POOL_ENV, "")
        if not path:
            raise PoolNotAvailable(
                f"--pool=custom needs {CUSTOM_POOL_ENV}=module.path:Class in the environment"
            )
        return _import_pool_class(path)
    if name in POOLS:
        entry = POOLS[name]
        package, requirement = entry.package, entry.requirement
        if package:
            # Imported up front: the prefork module imports billiard only when a pool is built.
            try:
                importlib.import_module(package)
            except ModuleNotFoundError as exc:
                raise PoolNotAvailable(
                    f"the {name} pool needs the {package!r} package, which is not installed: "
                    f"pip install '{requirement}', or choose one of "
                    f"{', '.join(installed_pool_choices())}"
                ) from exc
        return _import_pool_class(entry.path, pool=name, requirement=requirement)
    if ":" in name or "." in name:
        return _import_pool_class(name)
    hint = difflib.get_close_matches(name, list(POOLS), n=1)
    did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
    raise PoolNotAvailable(
        f"unknown pool {name!r}; choose one of {', '.join(pool_choices())}.{did_you_mean}"
    )


def _import_pool_class(path: str, *, pool: str = "", requirement: str = "") -> type[BasePool]:
    if ":" in path:
        module_name, _, attr = path.partition(":")
    else:
        module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if requirement and exc.name and not exc.name.startswith("djworker"):
            raise PoolNotAvailable(
                f"the {pool} pool needs the {exc.name!r} package: pip install '{requirement}'"
            ) from exc
        raise PoolNotAvailable(f"cannot import pool module {module_name!r}: {exc}") from exc
    try:
        cls = getattr(module, attr)
    except AttributeError as exc:
        raise PoolNotAvailable(f"module {module_name!r} has no pool class {attr!r}") from exc
    check_pool_class(cls, path)
    return cls  # type: ignore[no-any-return]


def check_pool_class(cls: object, path: str) -> None:
    """Refuse a custom pool that does not implement ``BasePool``, naming what is missing."""
    if not isinstance(cls, type) or not issubclass(cls, BasePool):
        raise ConfigurationError(
            f"pool {path!r} must be a subclass of djworker.concurrency.base.BasePool "
            f"defining start, stop, apply_async and busy; got {cls!r}"
        )
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise ConfigurationError(
            f"pool {path!r} does not implement BasePool: missing {', '.join(missing)}; "
            "a pool defines start, stop, apply_async and busy "
            "(see djworker.concurrency.base.BasePool)"
        )
