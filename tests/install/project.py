"""A throwaway Django project written into a temporary directory for the clean-venv installs.

It lives outside the checkout, so the venv's installed djworker is imported, never the
checkout's. Its settings follow the README: ``django.contrib.auth``, ``contenttypes``,
``djworker`` and one app with a ``tasks.py``.
"""

from __future__ import annotations

from pathlib import Path

MANAGE = """\
import os
import sys

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_settings")
from django.core.management import execute_from_command_line

execute_from_command_line(sys.argv)
"""

SETTINGS = """\
import importlib.util
import os

import environ

SECRET_KEY = "install-test-not-secret"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "djworker",
    "roundtrip",
]
DATABASES = {"default": environ.Env().db("DATABASE_URL")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A worker and a publisher share the file: take the write lock up front, wait for it, and
    # let readers and the writer work at once (what djworker's checks ask for).
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DJWORKER = {"BROKER_URL": os.environ.get("BROKER_URL", "django://")}
if importlib.util.find_spec("django_tasks"):  # the tasks extra: djworker as django.tasks backend
    TASKS = {"default": {"BACKEND": "djworker.backend.WorkerBackend", "QUEUES": []}}
"""

TASKS = """\
import importlib.util

import djworker


@djworker.task
def add(a: int, b: int) -> int:
    return a + b


if importlib.util.find_spec("django_tasks"):
    from django_tasks import task

    @task()
    def multiply(a: int, b: int) -> int:
        return a * b
"""

ROUNDTRIP_COMMAND = """\
import time

from django.core.management.base import BaseCommand

from roundtrip.tasks import add


class Command(BaseCommand):
    help = "Publish one task and wait for its result."

    def add_arguments(self, parser):
        parser.add_argument("--queue", default="default")
        parser.add_argument("--framework", action="store_true", help="through django.tasks")

    def handle(self, *args, **options):
        if options["framework"]:
            return self.through_the_tasks_framework(options["queue"])
        result = add.apply_async((2, 3), queue=options["queue"])
        value = result.get(timeout=120)
        self.stdout.write(f"{result.status} {value}")

    def through_the_tasks_framework(self, queue):
        from roundtrip.tasks import multiply

        result = multiply.using(queue_name=queue).enqueue(2, 3)
        deadline = time.monotonic() + 120
        while result.status not in ("SUCCESSFUL", "FAILED") and time.monotonic() < deadline:
            time.sleep(0.1)
            result.refresh()
        self.stdout.write(f"{result.status} {result.return_value}")
"""


def write_project(root: Path) -> Path:
    """Write the project under ``root`` and return its directory (where manage.py is)."""
    files = {
        "manage.py": MANAGE,
        "site_settings.py": SETTINGS,
        "roundtrip/__init__.py": "",
        "roundtrip/tasks.py": TASKS,
        "roundtrip/management/__init__.py": "",
        "roundtrip/management/commands/__init__.py": "",
        "roundtrip/management/commands/roundtrip.py": ROUNDTRIP_COMMAND,
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
