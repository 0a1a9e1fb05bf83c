"""Which green pool a command line asks for, read before anything is imported."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from djworker.green import requested_green_pool
from tests.integration.harness import ROOT


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["manage.py", "runworker", "--pool=gevent"], "gevent"),
        (["manage.py", "runworker", "--pool", "eventlet", "-c", "500"], "eventlet"),
        (["manage.py", "runworker", "-P", "gevent"], "gevent"),
        (["manage.py", "runworker", "-Pgevent"], "gevent"),
        (["manage.py", "runworker", "--pool=threads"], None),
        (["manage.py", "runworker", "--pool=myproject.pools:Mine"], None),
        (["manage.py", "migrate", "--pool=gevent"], None),
        (["manage.py", "shell", "-c", "runworker --pool=gevent"], None),
    ],
)
def test_the_green_pool_is_read_from_the_runworker_command_line(
    argv: list[str], expected: str | None
) -> None:
    assert requested_green_pool(argv, environ={}) == expected


def test_the_environment_names_the_pool_when_the_command_line_does_not() -> None:
    argv = ["manage.py", "runworker", "-c", "10"]
    assert requested_green_pool(argv, environ={"DJWORKER_POOL": "eventlet"}) == "eventlet"


def test_the_command_line_wins_over_the_environment() -> None:
    argv = ["manage.py", "runworker", "--pool=threads"]
    assert requested_green_pool(argv, environ={"DJWORKER_POOL": "gevent"}) is None


def test_python_m_djworker_refuses_to_guess_the_settings_module() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-m", "djworker", "runworker"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "DJANGO_SETTINGS_MODULE is not set" in done.stderr


def test_python_m_djworker_runs_only_runworker() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "djworker", "migrate"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "runs one command, runworker; got 'migrate'" in done.stderr


def test_reading_which_pool_to_patch_for_imports_neither_django_nor_a_green_library() -> None:
    # manage.py calls djworker.green first thing: what it reads (the pool registry and the
    # green libraries' hooks) must leave Django, psycopg and kombu unimported until patched.
    code = (
        "import sys, djworker.green as g\n"
        "argv = ['manage.py', 'runworker', '-P', 'gevent']\n"
        "assert g.requested_green_pool(argv, {}) == 'gevent'\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'gevent', 'eventlet', 'psycopg', 'kombu', 'billiard'))\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
