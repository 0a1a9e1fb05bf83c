"""Retrying a write that found SQLite busy: which errors, how often, and never inside a caller's
transaction. The busy errors are real ones, made by two connections to one SQLite file."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import OperationalError, transaction

from djworker import busy


@pytest.fixture
def locked_error(tmp_path: Path) -> Iterator[OperationalError]:
    """``database is locked`` as Django raises it: its own error, the driver's as the cause."""
    path = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as driver_error:
        error = OperationalError(str(driver_error))
        error.__cause__ = driver_error
    else:  # pragma: no cover - SQLite always refuses a second writer
        raise AssertionError("the second writer got the lock")
    yield error
    other.close()
    holder.close()


def no_such_table(tmp_path: Path) -> OperationalError:
    with sqlite3.connect(tmp_path / "empty.sqlite3") as connection:
        try:
            connection.execute("UPDATE missing SET x = 1")
        except sqlite3.OperationalError as driver_error:
            error = OperationalError(str(driver_error))
            error.__cause__ = driver_error
            return error
    raise AssertionError("the update of a missing table succeeded")  # pragma: no cover


class FailingWrite:
    """A write that raises each of ``errors`` in turn, then returns ``"written"``."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "written"


def test_a_locked_database_is_busy_and_a_missing_table_is_not(
    locked_error: OperationalError, tmp_path: Path
) -> None:
    assert busy.is_busy(locked_error)
    assert busy.is_busy(locked_error.__cause__)  # type: ignore[arg-type]
    assert not busy.is_busy(no_such_table(tmp_path))
    assert not busy.is_busy(OperationalError("server closed the connection unexpectedly"))


def test_a_busy_write_is_retried_until_it_goes_through(
    locked_error: OperationalError, caplog: pytest.LogCaptureFixture
) -> None:
    write = FailingWrite(locked_error, locked_error, locked_error)
    pauses: list[float] = []
    with caplog.at_level(logging.WARNING, logger="djworker.busy"):
        result = busy.retry_when_busy(
            write, alias="default", what="test write", sleep=pauses.append
        )
    assert result == "written"
    assert write.calls == 4
    assert len(pauses) == 3
    assert pauses[0] <= busy.FIRST_PAUSE_S and pauses[0] < pauses[2] <= busy.MAX_PAUSE_S
    logged = [record.getMessage() for record in caplog.records]
    assert any("test write found the database busy" in line for line in logged), logged


def test_a_write_busy_for_longer_than_the_bound_fails_with_the_busy_error(
    locked_error: OperationalError,
) -> None:
    write = FailingWrite(*[locked_error] * 1000)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(OperationalError, match="database is locked"):
        busy.retry_when_busy(write, alias="default", what="w", sleep=sleep, clock=lambda: now[0])
    assert now[0] >= busy.RETRY_FOR_S
    assert write.calls < 1000


def test_any_other_error_is_raised_at_once(tmp_path: Path) -> None:
    for error in (no_such_table(tmp_path), OperationalError("could not connect to server")):
        write = FailingWrite(error)
        with pytest.raises(OperationalError):
            busy.retry_when_busy(write, alias="default", what="w", sleep=lambda s: None)
        assert write.calls == 1


@pytest.mark.django_db(transaction=True)
def test_a_write_inside_a_callers_transaction_is_not_retried(
    locked_error: OperationalError,
) -> None:
    write = FailingWrite(locked_error)
    with pytest.raises(OperationalError), transaction.atomic():
        busy.retry_when_busy(write, alias="default", what="w", sleep=lambda s: None)
    assert write.calls == 1
