"""What the runner compares: the implementations, the pools each one has, and its database.

Every implementation stores its results in PostgreSQL, in a database of its own
(``<prefix>_<database>``); the Redis ones get a Redis database of their own on the runner's
private server.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

#: the pools in the order the tables and plots show them, with the concurrency every
#: implementation gets on each (a no-op gains nothing from more; gevent needs some to overlap)
POOLS: dict[str, int] = {"solo": 1, "threads": 4, "prefork": 2, "gevent": 20}
#: the brokers compared: Redis (djworker vs Celery) and PostgreSQL as the broker
BROKERS = ("redis", "database")


@dataclass(frozen=True)
class Implementation:
    name: str
    #: how its processes are started and called: djworker, djworker-django-tasks, celery, huey
    #: or django-tasks-db (what ``client.py`` and ``workers.py`` switch on)
    kind: str
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
    #: a folder to put first on its processes' ``PYTHONPATH`` (another djworker's source)
    source: str | None = None

    @property
    def tables(self) -> str:
        """Whose tables hold its results: djworker, celery, huey or tasksdb."""
        return {"djworker-django-tasks": "djworker", "django-tasks-db": "tasksdb"}.get(
            self.kind, self.kind
        )


DJWORKER_REDIS = Implementation(
    "djworker-redis", "djworker", "redis", tuple(POOLS), "djworker", 0, "djworker (redis://)"
)
CELERY = Implementation(
    "celery", "celery", "redis", tuple(POOLS), "celery", 1, "Celery 5.7 + django-celery-results"
)
DJWORKER_DATABASE = Implementation(
    "djworker-db", "djworker", "database", tuple(POOLS), "djworker", None, "djworker (django://)"
)
#: django.tasks through djworker.backend.WorkerBackend, on django:// like the native run
DJWORKER_DJANGO_TASKS = Implementation(
    "djworker-django-tasks",
    "djworker-django-tasks",
    "database",
    ("threads",),
    "djworker",
    None,
    "django.tasks via WorkerBackend (django://)",
)
#: huey has no solo pool: its one-thread consumer (-k thread -w 1) stands in for it
HUEY = Implementation("huey", "huey", "database", tuple(POOLS), "huey", None, "huey PostgresHuey")
#: db_worker runs one task at a time in one process: the solo pool only
TASKS_DB = Implementation(
    "django-tasks-db",
    "django-tasks-db",
    "database",
    ("solo",),
    "tasksdb",
    None,
    "django-tasks-db db_worker",
)

ALL = (DJWORKER_REDIS, CELERY, DJWORKER_DATABASE, HUEY, TASKS_DB, DJWORKER_DJANGO_TASKS)
BY_NAME = {implementation.name: implementation for implementation in ALL}
#: the implementation each broker group's ratios are taken against
REFERENCE = {"redis": DJWORKER_REDIS, "database": DJWORKER_DATABASE}
#: the peers that need the bench extra (the djworker ones need only djworker's own extras)
PEERS = (CELERY, HUEY, TASKS_DB)
#: the Redis database of a baseline djworker (``--baseline``)
BASELINE_REDIS_DB = 2


def baselines(ref: str, source: str) -> tuple[Implementation, ...]:
    """djworker at git ``ref`` (its ``djworker/`` extracted to ``source``) on both brokers.

    It has a database of its own, migrated by its own migrations, and runs next to the
    checkout's djworker in every cell, so a change's before and after come from one run.
    Registered in ``BY_NAME``, so the report finds its label.
    """
    found = (
        replace(
            DJWORKER_REDIS,
            name="djworker-redis@base",
            database="djworker_baseline",
            redis_db=BASELINE_REDIS_DB,
            label=f"djworker at {ref} (redis://)",
            source=source,
        ),
        replace(
            DJWORKER_DATABASE,
            name="djworker-db@base",
            database="djworker_baseline",
            label=f"djworker at {ref} (django://)",
            source=source,
        ),
    )
    BY_NAME.update((implementation.name, implementation) for implementation in found)
    return found


def by_names(names: str) -> tuple[Implementation, ...]:
    """The implementations a comma-separated ``--only`` value names, in ``ALL``'s order."""
    wanted = {name.strip() for name in names.split(",") if name.strip()}
    unknown = sorted(wanted - set(BY_NAME))
    if unknown:
        raise ValueError(f"unknown implementation(s) {unknown}; choose from {sorted(BY_NAME)}")
    return tuple(implementation for implementation in ALL if implementation.name in wanted)
