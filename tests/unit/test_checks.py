"""The system checks say what a SQLite database djworker writes to is missing, and how to add it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from djworker.checks import sqlite_warnings

SQLITE = "django.db.backends.sqlite3"
RECOMMENDED = {
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL",
}


def ids(settings: dict[str, Any]) -> list[str]:
    return [message.id or "" for message in sqlite_warnings("default", settings)]


def test_sqlite_with_django_defaults_gets_both_warnings_with_what_to_add(tmp_path: Path) -> None:
    messages = sqlite_warnings("default", {"ENGINE": SQLITE, "NAME": str(tmp_path / "db")})
    assert [m.id for m in messages] == ["djworker.W002", "djworker.W003"]
    assert messages[0].hint == (
        """add "transaction_mode": "IMMEDIATE" to DATABASES['default']['OPTIONS']"""
    )
    assert messages[1].hint == (
        """add "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL" to """
        "DATABASES['default']['OPTIONS']"
    )


def test_sqlite_with_immediate_transactions_and_wal_passes(tmp_path: Path) -> None:
    assert ids({"ENGINE": SQLITE, "NAME": str(tmp_path / "db"), "OPTIONS": RECOMMENDED}) == []
    exclusive = {**RECOMMENDED, "transaction_mode": "exclusive"}
    assert ids({"ENGINE": SQLITE, "NAME": str(tmp_path / "db"), "OPTIONS": exclusive}) == []


def test_a_database_file_already_in_wal_mode_needs_no_init_command(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (x)")
    options = {"transaction_mode": "IMMEDIATE"}
    assert ids({"ENGINE": SQLITE, "NAME": str(path), "OPTIONS": options}) == []
    rollback = tmp_path / "rollback.sqlite3"
    with sqlite3.connect(rollback) as connection:
        connection.execute("CREATE TABLE t (x)")
    assert ids({"ENGINE": SQLITE, "NAME": str(rollback), "OPTIONS": options}) == ["djworker.W003"]


def test_an_existing_init_command_is_extended_rather_than_replaced(tmp_path: Path) -> None:
    options = {"transaction_mode": "IMMEDIATE", "init_command": "PRAGMA foreign_keys=ON"}
    [message] = sqlite_warnings(
        "default", {"ENGINE": SQLITE, "NAME": str(tmp_path / "db"), "OPTIONS": options}
    )
    assert message.hint == (
        """append "; PRAGMA journal_mode=WAL" to DATABASES['default']['OPTIONS']["init_command"]"""
    )


def test_other_databases_and_in_memory_sqlite_are_left_alone() -> None:
    assert ids({"ENGINE": "django.db.backends.postgresql", "NAME": "djworker"}) == []
    memory = {"ENGINE": SQLITE, "NAME": ":memory:", "OPTIONS": {"transaction_mode": "IMMEDIATE"}}
    assert ids(memory) == []
