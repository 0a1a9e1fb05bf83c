"""Tasks for the pool contract suite, the green-pool tests and benchmarks/green_bench.py."""

from __future__ import annotations

import os
import time

import djworker
from djworker.exceptions import SoftTimeLimitExceeded
from tests.taskapp.models import Note

_redis_clients: dict[str, object] = {}


def _redis(url: str) -> object:
    import redis

    if url not in _redis_clients:
        # Blocking and bounded, so 200 concurrent tasks queue for a connection instead of failing.
        pool = redis.BlockingConnectionPool.from_url(url, max_connections=50, timeout=30)
        _redis_clients[url] = redis.Redis(connection_pool=pool)
    return _redis_clients[url]


@djworker.task(ignore_result=True)
def io_wait(ms: int, redis_url: str, key: str) -> None:
    """Waits on I/O for ``ms`` then records (start, end) in a Redis list."""
    start = time.time()
    time.sleep(ms / 1000)
    _redis(redis_url).rpush(key, f"{start} {time.time()}")  # type: ignore[attr-defined]


@djworker.task
def orm_then_wait(ms: int, text: str) -> int:
    """Writes a row, waits, reads it back: holds a connection across a wait, like real tasks."""
    note = Note.objects.create(text=text)
    time.sleep(ms / 1000)
    return Note.objects.filter(pk=note.pk).count()


@djworker.task
def wait_for_soft_limit(note: str) -> str:
    """Waits until the soft limit interrupts it, then cleans up and returns normally.

    Short sleeps, because a thread pool's limit lands only between bytecodes.
    """
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.01)
    except SoftTimeLimitExceeded:
        Note.objects.create(text=note)
        return "cleaned up"
    return "never interrupted"


@djworker.task
def sleep_forever(note: str = "") -> None:
    if note:
        Note.objects.create(text=note)
    time.sleep(3600)


@djworker.task
def process_id() -> int:
    return os.getpid()


@djworker.task
def green_report() -> dict[str, object]:
    """How the worker process running this task was patched."""
    import socket
    import sys

    import psycopg.waiting

    return {
        "socket": socket.socket.__module__,
        "psycopg_wait": psycopg.waiting.wait.__name__,
        "gevent_patched": "gevent.monkey" in sys.modules,
    }


@djworker.task(ignore_result=True)
def wait_ms(ms: int) -> None:
    """Only waits: the pool-and-execute() overhead benchmark (no broker, no result row)."""
    time.sleep(ms / 1000)
