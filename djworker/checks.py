"""System checks for djworker's settings (ids djworker.E001..., warnings djworker.W001...)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.apps import apps
from django.core.checks import CheckMessage, Error, register
from django.core.checks import Warning as CheckWarning
from django.db import router
from django.db.utils import ConnectionHandler

#: an init_command that switches the database to write-ahead logging
_WAL_PRAGMA = re.compile(r"journal_mode\s*=\s*['\"]?wal\b", re.IGNORECASE)
#: SQLite's file header: bytes 18 and 19 (write and read format versions) are 2 in WAL mode
_HEADER_WAL_OFFSET = 18
_RECOMMENDED_INIT_COMMAND = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL"

#: apps djworker's models and admin depend on: a command records the user who asked for it,
#: and the admin's permissions are ``auth`` permissions on content types
REQUIRED_APPS = ("django.contrib.auth", "django.contrib.contenttypes")


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from djworker.conf import SettingsError, read_settings

    try:
        read_settings()
    except SettingsError as exc:
        return [Error(str(exc), hint=exc.hint, id="djworker.E001")]
    return []


@register()
def check_required_apps(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.apps import apps

    missing = [name for name in REQUIRED_APPS if not apps.is_installed(name)]
    if not missing:
        return []
    return [
        Error(
            f"djworker needs {' and '.join(repr(name) for name in missing)} in INSTALLED_APPS",
            hint=f"add {', '.join(repr(name) for name in REQUIRED_APPS)} to INSTALLED_APPS "
            "(djworker records who sent a control command, and its admin uses their permissions)",
            id="djworker.E002",
        )
    ]


@register(deploy=False)
def check_error_pages_hide_the_broker_password(
    app_configs: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """With DEBUG on, Django's error page lists the settings: the broker password must not show."""
    from django.conf import settings
    from django.core.checks import Warning
    from django.views.debug import get_default_exception_reporter_filter

    url = getattr(settings, "DJWORKER", {}).get("BROKER_URL", "")
    if not settings.DEBUG or not isinstance(url, str):
        return []
    from djworker.broker_conf import hide_url_passwords

    if hide_url_passwords(url) == url:  # no password to show
        return []
    shown = get_default_exception_reporter_filter().cleanse_setting("DJWORKER", settings.DJWORKER)
    if not isinstance(shown, dict) or shown.get("BROKER_URL") != url:
        return []
    return [
        Warning(
            "DEBUG is on and Django's error page would show the password in "
            "settings.DJWORKER['BROKER_URL']",
            hint='set DEFAULT_EXCEPTION_REPORTER_FILTER = "djworker.error_reports.'
            'ExceptionReporterFilter", or turn DEBUG off',
            id="djworker.W001",
        )
    ]


@register()
def check_sqlite(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """SQLite databases djworker writes to need IMMEDIATE transactions and WAL.

    Reads settings and at most a file's first bytes: no connection, no query.
    """
    from django.db import connections

    messages: list[CheckMessage] = []
    for alias in sorted(written_aliases(connections)):
        messages.extend(sqlite_warnings(alias, connections.settings[alias]))
    return messages


def sqlite_warnings(alias: str, settings: Mapping[str, Any]) -> list[CheckMessage]:
    """W002/W003 for one database's settings; none if it is not SQLite."""
    if not str(settings.get("ENGINE", "")).endswith("sqlite3"):
        return []
    messages: list[CheckMessage] = []
    options: Mapping[str, Any] = settings.get("OPTIONS") or {}
    where = f"DATABASES[{alias!r}]['OPTIONS']"
    mode = str(options.get("transaction_mode") or "DEFERRED").upper()
    if mode not in ("IMMEDIATE", "EXCLUSIVE"):
        messages.append(
            CheckWarning(
                f"DATABASES[{alias!r}] is SQLite with {mode} transactions: a transaction "
                "that reads and then writes fails with 'database is locked' at once, "
                "whatever the timeout, when another process (a worker, the web process) "
                "wrote in between; djworker retries its own writes, your code does not",
                hint=f'add "transaction_mode": "IMMEDIATE" to {where}',
                id="djworker.W002",
            )
        )
    if not uses_wal(settings):
        init_command = str(options.get("init_command") or "")
        hint = (
            f'append "; PRAGMA journal_mode=WAL" to {where}["init_command"]'
            if init_command.strip()
            else f'add "init_command": "{_RECOMMENDED_INIT_COMMAND}" to {where}'
        )
        messages.append(
            CheckWarning(
                f"DATABASES[{alias!r}] is SQLite in rollback-journal mode: a commit waits "
                "for every reader and every reader for a commit, so workers and the web "
                "process keep waiting on each other and fail with 'database is locked' "
                "under load",
                hint=hint,
                id="djworker.W003",
            )
        )
    return messages


def written_aliases(connections: ConnectionHandler) -> set[str]:
    """The databases djworker writes to: its models' and the ``django://`` broker's."""
    from djworker.conf import DEFAULT_BROKER_URL, SettingsError, read_settings

    aliases = {router.db_for_write(model) for model in apps.get_app_config("djworker").get_models()}
    try:
        configured = read_settings()
    except SettingsError:
        return aliases  # djworker.E001 reports it
    broker_url = os.environ.get("DJWORKER_BROKER_URL") or configured.get(
        "broker_url", DEFAULT_BROKER_URL
    )
    if broker_url.startswith("django://"):
        alias = configured["broker_transport_options"].get("database", "default")
        if alias in connections.settings:
            aliases.add(alias)
    return aliases


def uses_wal(settings: Mapping[str, Any]) -> bool:
    """True if ``init_command`` asks for WAL or the database file already is in WAL mode.

    WAL is a property of the file, kept across connections, so a file switched once (by
    ``sqlite3 db.sqlite3 'PRAGMA journal_mode=WAL'``) needs no init_command.
    """
    if _WAL_PRAGMA.search(str((settings.get("OPTIONS") or {}).get("init_command") or "")):
        return True
    name = str(settings.get("NAME") or "")
    if not name or name == ":memory:" or "mode=memory" in name:
        return True  # nothing else shares an in-memory database
    try:
        with Path(name.removeprefix("file:").split("?")[0]).open("rb") as database:
            header = database.read(_HEADER_WAL_OFFSET + 2)
    except OSError:
        return False  # not created yet: only an init_command would make it WAL
    return header[_HEADER_WAL_OFFSET:] == b"\x02\x02"
