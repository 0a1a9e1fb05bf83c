"""Tasks the prefork tests run: database round trips, process trees, memory and limits."""

from __future__ import annotations

import os
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor

from django.db import connection

import djworker
from djworker.exceptions import SoftTimeLimitExceeded
from tests.taskapp.models import Note

_hoard: list[bytes] = []


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


@djworker.task
def orm_round_trip(i: int) -> dict[str, int]:
    """Write a row, read it back through the ORM; report the process and the DB session."""
    note = Note.objects.create(text=f"orm-{i}")
    assert Note.objects.get(pk=note.pk).text == f"orm-{i}"
    return {"pid": os.getpid(), "backend": _backend_pid()}


def _square(x: int) -> int:
    return x * x


@djworker.task
def sum_of_squares_in_subprocesses(n: int) -> int:
    with ProcessPoolExecutor(max_workers=2) as executor:
        return sum(executor.map(_square, range(n)))


@djworker.task
def start_grandchild_then_sleep(key: str, seconds: float) -> None:
    """Leave a ``sleep`` grandchild running, note its pid, then outlive any hard limit."""
    grandchild = subprocess.Popen(["sleep", "120"])
    Note.objects.create(text=f"{key}:{grandchild.pid}")
    time.sleep(seconds)


@djworker.task
def hoard_memory(mib: int) -> int:
    """Keep ``mib`` MiB alive in this process, so its resident memory grows."""
    _hoard.append(os.urandom(1024) * (1024 * mib))
    return os.getpid()


@djworker.task(reject_on_worker_lost=True)
def die_once_then_succeed(key: str) -> str:
    """SIGKILL its own process on the first run; the redelivered run succeeds."""
    if not Note.objects.filter(text=key).exists():
        Note.objects.create(text=key)
        os.kill(os.getpid(), 9)
    return "second run"


@djworker.task
def wait_for_soft_limit(key: str) -> str:
    try:
        while True:
            time.sleep(0.01)
    except SoftTimeLimitExceeded:
        Note.objects.create(text=key)
        return "cleaned up"
