"""What a broker's own settings let it lose, told at start rather than found after a restart.

Redis keeps its lists in memory. Without RDB snapshots (``save``) and without the append-only
file (``appendonly``), a restart of redis empties every queue; with a ``maxmemory-policy`` other
than ``noeviction``, redis may delete a queue's list (or the ``unacked`` hash) to make room. In
either case tasks disappear without an error anywhere. ``redis_warnings`` reads the settings
once, at start, and says which of them make at-least-once delivery impossible. RabbitMQ's
durable queues and persistent messages, and ``django://``'s table, keep messages across a
restart by themselves: nothing is checked there.
"""

from __future__ import annotations

from typing import Any

import kombu

from djworker.log_safety import get_logger

logger = get_logger(__name__)


def _config(client: Any) -> tuple[str | None, str, str]:
    """(save rules or None if unknown, appendonly, maxmemory-policy)."""
    # Imported here: only a redis broker gets this far, and djworker runs without redis installed.
    import redis

    try:
        values: dict[str, str] = {}
        for name in ("save", "appendonly", "maxmemory-policy"):
            values.update(client.config_get(name))
        return (
            values.get("save", ""),
            values.get("appendonly", "no"),
            values.get("maxmemory-policy", "noeviction"),
        )
    except redis.ResponseError:
        # CONFIG is often disabled on managed services; INFO tells all but the save rules.
        persistence = client.info("persistence")
        memory = client.info("memory")
        appendonly = "yes" if persistence.get("aof_enabled") else "no"
        return None, appendonly, str(memory.get("maxmemory_policy", "noeviction"))


def redis_warnings(connection: kombu.Connection) -> list[str]:
    """One line per setting of this redis that can lose queued tasks; [] if none."""
    channel: Any = connection.default_channel  # djworker's redis Channel
    with channel.conn_or_acquire() as client:
        save, appendonly, policy = _config(client)
    warnings = []
    if appendonly != "yes" and save == "":
        warnings.append(
            "redis has no persistence (save='' and appendonly=no): a restart of redis loses "
            "every queued and reserved task, silently; set appendonly yes (and appendfsync "
            "always or everysec) or RDB save rules"
        )
    elif appendonly != "yes" and save is None:
        warnings.append(
            "redis does not allow CONFIG, and appendonly is off: unless RDB snapshots are on, "
            "a restart of redis loses every queued task; RDB still loses the tasks of the "
            "last interval; appendonly yes is the setting that keeps them"
        )
    if policy != "noeviction":
        warnings.append(
            f"redis maxmemory-policy={policy} may evict keys when memory runs out, queues "
            "included, losing their tasks silently; set maxmemory-policy noeviction"
        )
    return warnings


def check(connection: kombu.Connection, scheme: str) -> list[str]:
    """The warnings for the worker's broker, logged; never fails the start."""
    if scheme not in ("redis", "rediss"):
        return []
    try:
        warnings = redis_warnings(connection)
    except Exception:
        logger.warning("could not read the redis persistence settings", exc_info=True)
        return []
    for warning in warnings:
        logger.warning("%s", warning)
    return warnings
