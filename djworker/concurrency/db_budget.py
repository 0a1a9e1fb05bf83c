"""The database-connection budget of a green worker.

Django keeps one connection per thread, and under gevent or eventlet a thread is a greenlet: a
worker running 500 greenlets could open 500 PostgreSQL connections. The budget is Django's own
psycopg connection pool (``DATABASES[alias]["OPTIONS"]["pool"]``): a greenlet's connection is
taken from the pool on its first query and handed back when ``execute()`` closes it after the
task, and a greenlet that finds the pool empty waits (a green wait) for one to come back.

* The project configured a pool: its ``max_size`` is the budget, untouched.
* PostgreSQL, no pool, ``CONN_MAX_AGE = 0``: the worker installs one with
  ``DEFAULT_MAX_SIZE`` connections before the first task and says so in its banner.
* ``CONN_MAX_AGE > 0`` (Django refuses a pool then) or another database: no budget; the worker
  warns, and up to one connection per running greenlet may be open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from djworker.log_safety import get_logger

logger = get_logger(__name__)

#: connections per database a green worker uses when the project configured no pool
DEFAULT_MAX_SIZE = 10
#: seconds a task waits for a connection before its query fails with ``PoolTimeout``
DEFAULT_WAIT_S = 60.0
#: psycopg_pool's own default when ``min_size`` is not given
PSYCOPG_POOL_MIN_SIZE = 4


@dataclass
class DbBudget:
    """Per database alias: the connection cap, and where it came from."""

    caps: dict[str, int] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    to_install: dict[str, dict[str, Any]] = field(default_factory=dict)
    unbounded: dict[str, str] = field(default_factory=dict)  # alias -> why
    installed: list[str] = field(default_factory=list)

    @classmethod
    def from_django(cls, *, concurrency: int) -> DbBudget:
        from django.db import connections

        budget = cls()
        for alias in connections:
            settings = connections.settings[alias]
            if "postgresql" not in settings["ENGINE"]:
                continue
            pool = settings.get("OPTIONS", {}).get("pool")
            if pool:
                options = pool if isinstance(pool, dict) else {}
                min_size = options.get("min_size", PSYCOPG_POOL_MIN_SIZE)
                budget.caps[alias] = int(options.get("max_size") or min_size)
                budget.sources[alias] = f"DATABASES[{alias!r}]['OPTIONS']['pool']"
            elif settings.get("CONN_MAX_AGE", 0) == 0:
                cap = min(concurrency, DEFAULT_MAX_SIZE)
                budget.caps[alias] = cap
                budget.sources[alias] = "djworker default (set DATABASES OPTIONS 'pool')"
                budget.to_install[alias] = {
                    "min_size": 0,
                    "max_size": cap,
                    "timeout": DEFAULT_WAIT_S,
                }
            else:
                budget.unbounded[alias] = (
                    f"CONN_MAX_AGE={settings['CONN_MAX_AGE']!r} rules out a connection pool; "
                    f"up to {concurrency} connections (one per greenlet)"
                )
        return budget

    def install(self) -> None:
        """Put the planned pools in place before any task opens a connection."""
        from django.db import connections

        for alias, why in self.unbounded.items():
            logger.warning("db=%s has no connection budget: %s", alias, why)
        if not self.to_install:
            return
        # A connection opened without the pool cannot be handed back to it later.
        connections.close_all()
        for alias, options in self.to_install.items():
            connections.settings[alias].setdefault("OPTIONS", {})["pool"] = dict(options)
            connections[alias].settings_dict.setdefault("OPTIONS", {})["pool"] = dict(options)
            self.installed.append(alias)
            logger.info("db=%s connection budget max_size=%d installed", alias, options["max_size"])
        self.to_install = {}

    def close(self) -> None:
        """Close the pools this budget installed, so no connection outlives the pool."""
        from django.db import connections

        connections.close_all()
        for alias in self.installed:
            closer = getattr(connections[alias], "close_pool", None)
            if closer is not None:
                closer()

    def describe(self) -> str:
        parts = [f"{alias}<={cap} ({self.sources[alias]})" for alias, cap in self.caps.items()]
        parts += [f"{alias} unbounded: {why}" for alias, why in self.unbounded.items()]
        return "; ".join(parts) or "no PostgreSQL database"
