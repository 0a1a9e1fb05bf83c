"""Settings for the test suite: the example project plus a task app used by the tests.

The database is PostgreSQL by default (``DATABASE_URL`` overrides it); pytest-django creates
``test_<name>``. Worker subprocesses started by integration tests get ``DATABASE_URL`` pointing
at that test database (see ``tests/integration/conftest.py``).
"""

from __future__ import annotations

import os

import environ

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/djworker")

from example_project.settings import *  # noqa: F403

env = environ.Env()
DATABASES = {"default": env.db("DATABASE_URL")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The example project's IMMEDIATE transactions, WAL and busy timeout.
    DATABASES["default"]["OPTIONS"] = {**SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}  # noqa: F405
    # A file, so worker subprocesses see the same test database.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = env(
        "DJWORKER_SQLITE_TEST_NAME",
        default=str(BASE_DIR / "test_djworker.sqlite3"),  # noqa: F405
    )

# A second database for the django:// broker's queue (transport option "database": "broker"),
# so a fault test can take the results database away while the queue stays.
if env.str("DJWORKER_TEST_BROKER_DATABASE_URL", default=""):
    DATABASES["broker"] = env.db("DJWORKER_TEST_BROKER_DATABASE_URL")

INSTALLED_APPS = [*INSTALLED_APPS, "tests.taskapp"]  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGGING["loggers"]["djworker"]["level"] = env("DJWORKER_LOG_LEVEL", default="INFO")  # type: ignore[index]  # noqa: F405
# Integration tests of result expiry set these for their workers.
if env("DJWORKER_TEST_RESULT_EXPIRES", default=""):
    DJWORKER["RESULT_EXPIRES"] = env.float("DJWORKER_TEST_RESULT_EXPIRES")  # noqa: F405
    DJWORKER["RESULT_CLEANUP_INTERVAL"] = env.float(  # noqa: F405
        "DJWORKER_TEST_RESULT_CLEANUP_INTERVAL", default=300
    )
if env("DJWORKER_TEST_WORKER_LOST_AFTER", default=""):
    DJWORKER["WORKER_LOST_AFTER"] = env.float("DJWORKER_TEST_WORKER_LOST_AFTER")  # noqa: F405
if env("DJWORKER_TEST_TRACEBACKS_LEVEL", default=""):
    LOGGING["loggers"]["djworker.tracebacks"] = {"level": env("DJWORKER_TEST_TRACEBACKS_LEVEL")}  # type: ignore[index]  # noqa: F405
# Any queue name: each integration test runs its tasks on queues of its own.
TASKS = {"default": {"BACKEND": "djworker.backend.WorkerBackend", "QUEUES": []}}
