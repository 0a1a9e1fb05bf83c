"""The services a comparison uses: a private Redis server and one PostgreSQL database each.

The Redis server is the runner's own (no persistence, 127.0.0.1 only), so no other user of the
machine's Redis shares it and every implementation gets a database number of its own. Each
implementation's PostgreSQL database is created and migrated once, and emptied before every run
with ``TRUNCATE``, so no run inherits another's rows or dead tuples.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

from benchmarks.compare.implementations import Implementation

ROOT = Path(__file__).resolve().parents[2]
#: Redis database where the latency probes write their waits
SINK_DB = 15
#: the tables each implementation's runs fill, emptied before every run
TABLES: dict[str, tuple[str, ...]] = {
    "djworker": ("djworker_taskresult", "djworker_queuemessage"),
    "celery": ("django_celery_results_taskresult",),
    "huey": ("huey_task", "huey_kv", "huey_schedule"),
    "tasksdb": ("django_tasks_database_dbtaskresult",),
}


@dataclass(frozen=True)
class Services:
    #: a PostgreSQL URL; its database name is the prefix of every implementation's database
    database_url: str
    redis_port: int

    def dsn(self, database: str) -> str:
        parts = urlsplit(self.database_url)
        prefix = parts.path.lstrip("/") or "djworker_bench"
        return urlunsplit(parts._replace(path=f"/{prefix}_{database}"))

    def redis_url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/{db}"

    @property
    def sink_url(self) -> str:
        return self.redis_url(SINK_DB)


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    """A Redis server for this comparison only; raises if it does not answer within 10 s."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH; the comparison starts a private one")
    workdir.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=(workdir / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"redis-server on port {port} exited; see {workdir / 'redis.log'}")
        try:
            client.ping()
            return server
        except redis.ConnectionError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit(f"redis-server on port {port} did not answer within 10 s")


def django_env(services: Services, implementation: Implementation) -> dict[str, str]:
    """The environment of a process of ``implementation``: worker, client or migrate."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (implementation.source, str(ROOT)))),
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "benchmarks.peers.settings",
        "DATABASE_URL": services.dsn(implementation.database),
        "CONN_MAX_AGE": "0",
        "DJWORKER_BENCH_SINK_URL": services.sink_url,
        "DJWORKER_BENCH_HUEY_DSN": services.dsn(implementation.database),
        # django:// unless the implementation has a database on the runner's Redis (below):
        # never the machine's Redis, whatever the caller's environment says.
        "DJWORKER_BROKER_URL": "django://",
    }
    if implementation.redis_db is not None:
        url = services.redis_url(implementation.redis_db)
        env["DJWORKER_BROKER_URL"] = url
        env["DJWORKER_BENCH_CELERY_BROKER"] = url
    return env


def workdir(implementation: Implementation) -> Path:
    """Where the implementation's processes start: ``python -m`` puts it first on ``sys.path``.

    So a baseline's processes start in its own source folder, or the checkout's djworker
    would be imported instead of it.
    """
    return Path(implementation.source) if implementation.source else ROOT


def prepare_database(services: Services, implementation: Implementation) -> None:
    """Create the implementation's database if it is missing (a baseline's: always), migrate it."""
    dsn = services.dsn(implementation.database)
    name = urlsplit(dsn).path.lstrip("/")
    admin_dsn = urlunsplit(urlsplit(dsn)._replace(path="/postgres"))
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        if implementation.source:
            # Another djworker's schema: made afresh, or an earlier run's migrations (of
            # another revision) would leave tables its own migrations do not expect.
            admin.execute(f'drop database if exists "{name}" with (force)')
        if not admin.execute("select 1 from pg_database where datname = %s", [name]).fetchone():
            admin.execute(f'create database "{name}"')
    if implementation.tables == "huey":
        # PostgresHuey creates its tables when it is first built.
        command = [sys.executable, "-c", "import benchmarks.peers.huey_app"]
    else:
        command = [sys.executable, "-m", "django", "migrate", "--verbosity", "0"]
    env = django_env(services, implementation)
    subprocess.run(command, cwd=workdir(implementation), env=env, check=True, timeout=300)


def reset(services: Services, implementation: Implementation) -> None:
    """Empty the implementation's tables and Redis database, and the latency sink."""
    with psycopg.connect(services.dsn(implementation.database), autocommit=True) as conn:
        tables = [
            table
            for table in TABLES[implementation.tables]
            if conn.execute("select to_regclass(%s)", [table]).fetchone()[0] is not None  # type: ignore[index]
        ]
        if tables:
            conn.execute(f"truncate {', '.join(tables)} cascade")
    if implementation.redis_db is not None:
        redis.Redis.from_url(services.redis_url(implementation.redis_db)).flushdb()
    redis.Redis.from_url(services.sink_url).flushdb()
