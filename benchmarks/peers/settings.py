"""Django settings of every Django-based implementation the comparison runner starts.

The example project's settings plus the benchmark tasks, django-celery-results and
django-tasks-db (when the bench extra installed them). ``DATABASE_URL`` names each
implementation's own database; ``CONN_MAX_AGE`` stays Django's default, 0, unless set.
"""

from __future__ import annotations

import importlib.util

import environ

from example_project.settings import *  # noqa: F403

env = environ.Env()
DATABASES = {"default": env.db("DATABASE_URL")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
INSTALLED_APPS = [*INSTALLED_APPS, "benchmarks.peers"]  # noqa: F405
# Any queue name: every run uses a queue of its own.
TASKS = {"default": {"BACKEND": "djworker.backend.WorkerBackend", "QUEUES": []}}
if importlib.util.find_spec("django_celery_results"):
    INSTALLED_APPS.append("django_celery_results")
    CELERY_BROKER_URL = env("DJWORKER_BENCH_CELERY_BROKER", default="redis://127.0.0.1:6379/0")
    CELERY_RESULT_BACKEND = "django-db"
if importlib.util.find_spec("django_tasks_db"):
    INSTALLED_APPS.append("django_tasks_db")
    TASKS["tasksdb"] = {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": []}
LOGGING["loggers"]["djworker"]["level"] = "WARNING"  # type: ignore[index]  # noqa: F405
