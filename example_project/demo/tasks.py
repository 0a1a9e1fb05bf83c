"""Demo tasks for the quickstart: ``python manage.py enqueue_demo`` sends some."""

from __future__ import annotations

import random
import time

import djworker


@djworker.task
def add(x: int, y: int) -> int:
    return x + y


@djworker.task(max_retries=3, retry_backoff=True, autoretry_for=(ConnectionError,))
def flaky_fetch(url: str) -> str:
    """Fails half of the time with ConnectionError; retried with exponential backoff."""
    if random.random() < 0.5:
        raise ConnectionError(f"pretend {url} is down")
    return f"fetched {url}"


@djworker.task
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@djworker.task
def crunch(n: int = 200_000) -> int:
    """CPU-bound: about 20 ms of pure Python for the default n."""
    return sum(i * i for i in range(n))
