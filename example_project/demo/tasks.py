"""Demo tasks for the quickstart: ``python manage.py enqueue_demo`` sends some.

Both styles side by side: ``@djworker.task`` and Django's own ``@task`` (``django.tasks`` on
Django 6, the ``django-tasks`` backport on 5.2), which djworker runs through
``djworker.backend.WorkerBackend`` (see ``TASKS`` in settings.py).
"""

from __future__ import annotations

import random
import time

import djworker

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the backport, from pip install "djworker[tasks]"
    try:
        from django_tasks import task  # type: ignore[no-redef]
    except ImportError:
        task = None  # type: ignore[assignment]


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


if task is not None:

    @task(queue_name="default", priority=10)
    def greet(name: str) -> str:
        """A django.tasks task: enqueue() it; runworker runs it like the others."""
        return f"hello, {name}"
