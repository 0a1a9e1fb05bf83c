"""Fixtures of the fault suite: a side channel that counts real executions per task.

Fault tests assert two things of every run: nothing was lost (each key ran at least once) and
duplicates stay within the tasks that were running when the fault hit. Both are counted from
``ExecutionLog``, which the tasks in ``tests/taskapp/fault_tasks.py`` write to, not from the
result store, because a fault may stop a result from being stored at all.

Servers a test stops, restarts or crashes are private (``tests/faults/servers.py``):
``private_redis`` (no persistence), ``password_redis`` (``--requirepass``), ``persistent_redis``
(append-only file, fsync always), ``private_postgres`` (a migrated database of its own in a
private cluster, for ``django://`` and for results), and ``amqp_vhost`` with
``close_amqp_connections`` for RabbitMQ.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.faults.producer import ProducerProcess
from tests.faults.servers import PrivatePostgres, PrivateRedis, amqp_vhost_of
from tests.integration.harness import ROOT


class ExecutionLog:
    """The side channel of one test: every run appends ``<key> <pid>``, a completed one then
    ``<key> <pid> end``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    @property
    def env(self) -> dict[str, str]:
        """Environment to give a worker so its task runs write here."""
        return {"DJWORKER_FAULT_LOG": str(self.path)}

    def _lines(self) -> list[list[str]]:
        return [line.split(" ") for line in self.path.read_text().splitlines() if line]

    def runs(self) -> list[tuple[str, int]]:
        """Each run that started, as ``(key, pid)``."""
        return [(fields[0], int(fields[1])) for fields in self._lines() if len(fields) == 2]

    def counts(self) -> Counter[str]:
        """How many times each key started."""
        return Counter(key for key, _ in self.runs())

    def completions(self) -> Counter[str]:
        """How many runs of each key returned."""
        return Counter(fields[0] for fields in self._lines() if fields[2:] == ["end"])

    def running(self) -> set[str]:
        """Keys with a run that started and has not returned (yet, or ever)."""
        counts, completions = self.counts(), self.completions()
        return {key for key, n in counts.items() if n > completions[key]}

    def lost(self, keys: Iterable[str]) -> list[str]:
        """Keys that never ran."""
        counts = self.counts()
        return [key for key in keys if counts[key] == 0]

    def unfinished(self, keys: Iterable[str]) -> list[str]:
        """Keys no run of which completed."""
        completions = self.completions()
        return [key for key in keys if completions[key] == 0]

    def duplicated(self) -> dict[str, int]:
        """Keys that ran more than once, with how many times."""
        return {key: n for key, n in self.counts().items() if n > 1}


@pytest.fixture
def execution_log(tmp_path: Path) -> ExecutionLog:
    return ExecutionLog(tmp_path / "executions.log")


@pytest.fixture
def producer_factory() -> Iterator[Callable[..., ProducerProcess]]:
    """Start producer processes (``ProducerProcess``); any still running at the end is killed."""
    started: list[ProducerProcess] = []

    def start(queue: str, prefix: str, count: int, **kwargs: object) -> ProducerProcess:
        producer = ProducerProcess(queue=queue, prefix=prefix, count=count, **kwargs)  # type: ignore[arg-type]
        started.append(producer)
        return producer

    yield start
    for producer in started:
        producer.kill()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A started redis-server without persistence (a restart empties it); killed at the end."""
    server = PrivateRedis(tmp_path / "redis", persistent=False).start()
    yield server
    server.crash()


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A started redis-server that asks for a password (``--requirepass``); killed at the end."""
    server = PrivateRedis(tmp_path / "redis", password="right-secret").start()
    yield server
    server.crash()


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A started redis-server with ``appendonly yes`` and ``appendfsync always``."""
    server = PrivateRedis(tmp_path / "redis", persistent=True).start()
    yield server
    server.crash()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PrivatePostgres]:
    """One private PostgreSQL cluster for the session, with a migrated template database.

    Created on first use, dropped (files and all) at the end of the session. The template saves
    each test a ``migrate``: a test's database is a copy of it.
    """
    server = PrivatePostgres(Path(tempfile.mkdtemp(prefix="djworker-faults-pg-")))
    try:
        server.create().start()
        server.sql("CREATE DATABASE djworker_template")
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=ROOT,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "DATABASE_URL": server.url("djworker_template"),
            },
            check=True,
            capture_output=True,
            timeout=300,
        )
        yield server
    finally:
        server.drop()


@dataclass(frozen=True)
class PrivateDatabase:
    """A migrated database of one test in the private cluster ``server``."""

    server: PrivatePostgres
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    @property
    def env(self) -> dict[str, str]:
        """Environment for a worker or producer whose Django database is this one."""
        return {"DATABASE_URL": self.url}


@pytest.fixture
def private_postgres(postgres_cluster: PrivatePostgres) -> Iterator[PrivateDatabase]:
    """A fresh migrated database in the private cluster, which is running before and after."""
    if not postgres_cluster.running:
        postgres_cluster.start()
    name = f"faults_{uuid.uuid4().hex[:10]}"
    postgres_cluster.sql(f"CREATE DATABASE {name} TEMPLATE djworker_template")
    yield PrivateDatabase(postgres_cluster, name)
    if not postgres_cluster.running:
        postgres_cluster.start()
    postgres_cluster.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def amqp_vhost(amqp_url: str) -> str:
    """The RabbitMQ vhost of ``amqp_url``, to find a worker's connections in."""
    return amqp_vhost_of(amqp_url)
