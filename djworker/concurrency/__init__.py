"""Execution pools: the registry of built-in pools (``registry.py``) and their lookup by name.

This package's ``__init__`` imports nothing but the registry, which imports neither Django nor a
pool's third-party package: ``djworker.green`` reads the registry to monkey-patch a process
before Django is imported. The lookup (``lookup.py``) is imported when one of its names is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from djworker.concurrency.registry import POOLS, PROFILE_POOLS

if TYPE_CHECKING:
    from djworker.concurrency.lookup import (
        check_pool_class,
        custom_pools,
        installed_pool_choices,
        pool_choices,
        profile_pool_error,
        resolve_pool,
    )

__all__ = [
    "POOLS",
    "PROFILE_POOLS",
    "check_pool_class",
    "custom_pools",
    "installed_pool_choices",
    "pool_choices",
    "profile_pool_error",
    "resolve_pool",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from djworker.concurrency import lookup

        return getattr(lookup, name)
    raise AttributeError(f"module 'djworker.concurrency' has no attribute {name!r}")
