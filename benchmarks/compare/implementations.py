"""What the runner compares: the implementations, the pools each one has, and its database.

Every implementation stores its results in PostgreSQL, in a database of its own
(``<prefix>_<database>``); the Redis ones get a Redis database of their own on the runner's
private server.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the pools in the order the tables and plots show them, with the concurrency every
#: implementation gets on each (a no-op gains nothing from more; gevent needs some to overlap)
POOLS: dict[str, int] = {"solo": 1, "threads": 4, "prefork": 2, "gevent": 20}
#: the brokers compared: Redis (djworker vs Celery) and PostgreSQL as the broker
BROKERS = ("redis", "database")


@dataclass(frozen=True)
class Implementation:
    name: str
    #: the broker group it runs in, one of ``BROKERS``
    broker: str
    #: the pools it runs on (what the peer has; its own name for each is in workers.py)
    pools: tuple[str, ...]
    #: suffix of its PostgreSQL database; implementations sharing one share its tables
    database: str
    #: Redis database number on the runner's server, or None when it uses no Redis
    redis_db: int | None
    #: what the Markdown table calls it
    label: str


DJWORKER_REDIS = Implementation(
    "djworker-redis", "redis", tuple(POOLS), "djworker", 0, "djworker (redis://)"
)
CELERY = Implementation(
    "celery", "redis", tuple(POOLS), "celery", 1, "Celery 5.7 + django-celery-results"
)
DJWORKER_DATABASE = Implementation(
    "djworker-db", "database", tuple(POOLS), "djworker", None, "djworker (django://)"
)
#: django.tasks through djworker.backend.WorkerBackend, on django:// like the native run
DJWORKER_DJANGO_TASKS = Implementation(
    "djworker-django-tasks",
    "database",
    ("threads",),
    "djworker",
    None,
    "django.tasks via WorkerBackend (django://)",
)
#: huey has no solo pool: its one-thread consumer (-k thread -w 1) stands in for it
HUEY = Implementation("huey", "database", tuple(POOLS), "huey", None, "huey PostgresHuey")
#: db_worker runs one task at a time in one process: the solo pool only
TASKS_DB = Implementation(
    "django-tasks-db", "database", ("solo",), "tasksdb", None, "django-tasks-db db_worker"
)

ALL = (DJWORKER_REDIS, CELERY, DJWORKER_DATABASE, HUEY, TASKS_DB, DJWORKER_DJANGO_TASKS)
BY_NAME = {implementation.name: implementation for implementation in ALL}
#: the implementation each broker group's ratios are taken against
REFERENCE = {"redis": DJWORKER_REDIS, "database": DJWORKER_DATABASE}
#: the peers that need the bench extra (the djworker ones need only djworker's own extras)
PEERS = (CELERY, HUEY, TASKS_DB)


def by_names(names: str) -> tuple[Implementation, ...]:
    """The implementations a comma-separated ``--only`` value names, in ``ALL``'s order."""
    wanted = {name.strip() for name in names.split(",") if name.strip()}
    unknown = sorted(wanted - set(BY_NAME))
    if unknown:
        raise ValueError(f"unknown implementation(s) {unknown}; choose from {sorted(BY_NAME)}")
    return tuple(implementation for implementation in ALL if implementation.name in wanted)
