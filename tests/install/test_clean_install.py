"""Each extra, installed from a wheel of the checkout into a new venv, runs a real task.

For every extra: ``pip install djworker[extra]`` into a fresh venv, a throwaway project outside
the checkout, ``migrate`` and ``check``, a real ``runworker`` from that venv on the extra's broker
or pool, and one task published and seen SUCCESSFUL. The base install also runs the README's
headline command, ``runworker --pool=prefork --autoscale=1,3``.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.install.conftest import Venv, run
from tests.install.project import write_project
from tests.integration.harness import WorkerProcess

pytestmark = [pytest.mark.install, pytest.mark.timeout(1800)]


@dataclass(frozen=True)
class Case:
    extras: str
    broker: str  # "django", "redis" or "amqp"
    database: str  # "sqlite" or "postgres"
    worker_args: tuple[str, ...]
    imports: tuple[str, ...] = ()
    #: also run a task through Django's Tasks framework (djworker.backend.WorkerBackend)
    framework: bool = False


HEADLINE = ("--pool=prefork", "--autoscale=1,3")
CASES = [
    pytest.param(Case("", "django", "sqlite", HEADLINE), id="base", marks=pytest.mark.smoke),
    pytest.param(
        Case("postgres", "django", "postgres", ("-P", "threads", "-c", "2")), id="postgres"
    ),
    pytest.param(Case("redis", "redis", "sqlite", ("-P", "threads", "-c", "2")), id="redis"),
    pytest.param(Case("amqp", "amqp", "sqlite", ("-P", "threads", "-c", "2")), id="amqp"),
    pytest.param(Case("gevent", "django", "sqlite", ("-P", "gevent", "-c", "4")), id="gevent"),
    pytest.param(
        Case("eventlet", "django", "sqlite", ("-P", "eventlet", "-c", "4")), id="eventlet"
    ),
    pytest.param(Case("tasks", "django", "sqlite", ("-P", "threads"), framework=True), id="tasks"),
    pytest.param(
        Case("metrics", "django", "sqlite", ("-P", "threads"), imports=("prometheus_client",)),
        id="metrics",
    ),
    pytest.param(
        Case(
            "all",
            "redis",
            "postgres",
            HEADLINE,
            imports=("gevent", "eventlet", "prometheus_client"),
            framework=True,
        ),
        id="all",
    ),
]


class InstalledWorker(WorkerProcess):
    """``manage.py runworker`` run by the venv's Python in the throwaway project."""

    def __init__(self, venv: Venv, project: Path, env: dict[str, str], *args: str) -> None:
        super().__init__(*args)
        self.venv, self.project, self.venv_env = venv, project, env

    def launch(self) -> tuple[list[str], Path, dict[str, str]]:
        return (
            [str(self.venv.python), "manage.py", "runworker", *self.args],
            self.project,
            self.venv_env,
        )


def postgres_url() -> Iterator[str]:
    """A database of its own on the test PostgreSQL server, dropped afterwards."""
    import psycopg
    from django.conf import settings

    database = settings.DATABASES["default"]
    if "postgresql" in database["ENGINE"]:
        host, port = database.get("HOST") or "127.0.0.1", int(database.get("PORT") or 5432)
        user, base = database.get("USER") or "postgres", database["NAME"].removeprefix("test_")
    else:
        host, port, user, base = "127.0.0.1", 5432, "postgres", "djworker"
    require_service("PostgreSQL", host, port)
    name = f"{base}_install_{uuid.uuid4().hex[:8]}"
    admin = f"host={host} port={port} user={user} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://{user}@{host}:{port}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    case: Case = request.node.callspec.params["case"]
    if case.database == "postgres":
        yield from postgres_url()
    else:
        yield f"sqlite:///{tmp_path / 'db.sqlite3'}"


def broker_url(case: Case, request: pytest.FixtureRequest) -> str:
    if case.broker == "redis":
        return str(request.getfixturevalue("redis_url"))
    if case.broker == "amqp":
        return str(request.getfixturevalue("amqp_url"))
    return "django://"


@pytest.mark.parametrize("case", CASES)
def test_each_extra_installs_from_a_clean_venv_and_runs_a_task(
    case: Case,
    installed,  # type: ignore[no-untyped-def]
    database_url: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    broker = broker_url(case, request)
    venv: Venv = installed(case.extras)
    project = write_project(tmp_path / "site")
    env = venv.env(DATABASE_URL=database_url, BROKER_URL=broker)
    manage = [str(venv.python), "manage.py"]
    for module in case.imports:
        run([str(venv.python), "-c", f"import {module}"], cwd=project, env=env)
    run([*manage, "check", "--fail-level", "WARNING"], cwd=project, env=env)
    run([*manage, "migrate", "-v", "0"], cwd=project, env=env)

    queue = f"install-{uuid.uuid4().hex[:10]}"
    worker = InstalledWorker(venv, project, env, *case.worker_args, "-Q", queue)
    try:
        worker.start()
        done = run([*manage, "roundtrip", "--queue", queue], cwd=project, env=env, timeout=300)
        assert done.stdout.split() == ["SUCCESSFUL", "5"], worker.output
        if case.framework:
            done = run(
                [*manage, "roundtrip", "--framework", "--queue", queue],
                cwd=project,
                env=env,
                timeout=300,
            )
            assert done.stdout.split() == ["SUCCESSFUL", "6"], worker.output
        worker.signal(signal.SIGTERM)
        assert worker.wait(60) == 0, worker.output
    finally:
        worker.stop()
    assert "Traceback" not in worker.output, worker.output
    assert (
        str(venv.path)
        in run(
            [str(venv.python), "-c", "import djworker; print(djworker.__file__)"],
            cwd=project,
            env=env,
        ).stdout
    )  # the installed copy ran, not the checkout


def test_install_lines_naming_the_prefork_or_amqp_extra_still_resolve(
    installed,  # type: ignore[no-untyped-def]
    djworker_wheel: Path,
) -> None:
    venv: Venv = installed("")
    done = venv.pip("install", f"{djworker_wheel}[prefork,amqp]")
    assert "does not provide the extra" not in done.stdout + done.stderr
    assert "Successfully installed" not in done.stdout  # billiard and amqp came with the base
