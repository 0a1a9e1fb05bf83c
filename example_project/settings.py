"""Settings for the example project, read from the environment with django-environ.

With no environment at all it runs on SQLite and the ``django://`` broker, so a newcomer needs no
other service. ``DATABASE_URL`` and ``DJWORKER_BROKER_URL`` switch to PostgreSQL, Redis or
RabbitMQ, e.g. ``DATABASE_URL=postgres://postgres@127.0.0.1:5432/djworker``. ``DEBUG`` is off
unless ``DJANGO_DEBUG=true``.
"""

from __future__ import annotations

from pathlib import Path

import environ

from djworker.settings_env import transport_options_from_env

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env(
    # Off unless asked for: Django's debug pages show settings and local variables.
    DJANGO_DEBUG=(bool, False),
    CONN_MAX_AGE=(int, 0),
)

SECRET_KEY = env("DJANGO_SECRET_KEY", default="example-project-not-secret")
DEBUG = env("DJANGO_DEBUG")
# Error pages (with DEBUG on) and error e-mails hide the password inside any URL, such as
# DJWORKER["BROKER_URL"], as well as the settings Django hides by name.
DEFAULT_EXCEPTION_REPORTER_FILTER = "djworker.error_reports.ExceptionReporterFilter"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "djworker",
    "example_project.demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "example_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# SQLite as the database of a web process and workers at once (docs/configuration.md, SQLite).
SQLITE_OPTIONS = {
    # Take the write lock when a transaction begins. In SQLite's default (deferred) mode a
    # transaction that reads and then writes fails with "database is locked" at once, whatever
    # the timeout, as soon as another process wrote in between.
    "transaction_mode": "IMMEDIATE",
    # WAL: readers and the one writer no longer block each other. synchronous=FULL keeps every
    # commit on disk before it returns (NORMAL is faster, but a power loss may undo the last
    # commits, a just-published task among them).
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL",
    # Seconds a write waits for the lock before "database is locked".
    "timeout": 20,
}

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env("CONN_MAX_AGE")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Options given in DATABASE_URL (?timeout=5) win over these.
    DATABASES["default"]["OPTIONS"] = {**SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"

DJWORKER = {
    "BROKER_URL": env("DJWORKER_BROKER_URL", default="django://"),
    # A malformed value stops the process with one line naming the variable, not a traceback.
    "BROKER_TRANSPORT_OPTIONS": transport_options_from_env("DJWORKER_BROKER_TRANSPORT_OPTIONS"),
}

# Django's Tasks framework (django.tasks on Django 6, the django-tasks backport on 5.2:
# pip install "djworker[tasks]"): djworker's workers run its tasks too.
TASKS: dict[str, dict[str, object]] = {"default": {"BACKEND": "djworker.backend.WorkerBackend"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "[%(asctime)s %(levelname)s/%(processName)s] %(name)s: %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"djworker": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
