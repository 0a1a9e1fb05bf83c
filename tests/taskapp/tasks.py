"""Tasks the test suite runs in real workers."""

from __future__ import annotations

import importlib.util
import os
import signal
import time

import djworker
from djworker.exceptions import SoftTimeLimitExceeded
from tests.taskapp.models import Note

if importlib.util.find_spec("django.tasks") or importlib.util.find_spec("django_tasks"):
    # django.tasks tasks, run through djworker.backend.WorkerBackend (tests/django_tasks/)
    from tests.taskapp import framework_tasks  # noqa: F401


@djworker.task
def noop() -> None:
    return None


@djworker.task(ignore_result=True)
def noop_no_result() -> None:
    return None


@djworker.task
def add(x: int, y: int) -> int:
    return x + y


@djworker.task
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@djworker.task
def sleep(seconds: float, note: str = "") -> float:
    time.sleep(seconds)
    if note:
        Note.objects.create(text=note)
    return seconds


@djworker.task
def spin(cpu_seconds: float) -> int:
    """Busy on the CPU until this thread has used ``cpu_seconds`` (the pool advisor's tests)."""
    start, loops = time.thread_time(), 0
    while time.thread_time() - start < cpu_seconds:
        loops += 1
    return loops


@djworker.task
def write_note(text: str) -> int:
    return Note.objects.create(text=text).pk


@djworker.task(
    max_retries=2, retry_backoff=False, default_retry_delay=0.2, autoretry_for=(ConnectionError,)
)
def always_connection_error() -> None:
    raise ConnectionError("always down")


@djworker.task(max_retries=3, default_retry_delay=0.1, autoretry_for=(ConnectionError,))
def fail_twice_then_succeed(key: str) -> str:
    """Fails with ConnectionError until two notes for ``key`` exist."""
    if Note.objects.filter(text=key).count() < 2:
        Note.objects.create(text=key)
        raise ConnectionError("not yet")
    return "ok"


@djworker.task
def kill_own_process(note: str = "") -> None:
    if note:
        Note.objects.create(text=note)
    os.kill(os.getpid(), signal.SIGKILL)


@djworker.task
def sleep_then_note_once(seconds: float, key: str) -> str:
    """Records each run start, so a redelivered run is visible as a second note."""
    Note.objects.create(text=key)
    time.sleep(seconds)
    return key


@djworker.task(soft_time_limit=0.5)
def loop_until_soft_limit(note: str) -> str:
    try:
        while True:
            time.sleep(0.01)
    except SoftTimeLimitExceeded:
        Note.objects.create(text=note)
        return "cleaned up"


@djworker.task
def return_unserialisable() -> object:
    return object()


@djworker.task(ignore_result=True)
def note_then_fail(text: str) -> None:
    """Fails with an error message the result table cannot store (PostgreSQL refuses NUL)."""
    Note.objects.create(text="note_then_fail")
    raise ValueError(f"boom {text}\x00")


@djworker.task
def whoami() -> dict[str, int]:
    return {"pid": os.getpid()}


from tests.taskapp import (  # noqa: E402
    fault_tasks,  # noqa: F401 - registers the fault-suite tasks
    green_tasks,  # noqa: F401 - registers the green-pool tasks
    prefork_tasks,  # noqa: F401 - registers the prefork tasks
)


@djworker.task(redact_args=True)
def check_secret(password: str, *, pin: int) -> int:
    """Arguments no one should read in the admin: stored as ``[redacted]``."""
    return len(password) + pin


@djworker.task
def fail_unless_note(key: str) -> str:
    """Fails until a note ``key`` exists: a failure an operator can fix, then retry."""
    if not Note.objects.filter(text=key).exists():
        raise ValueError(f"no note {key!r} yet")
    return key


@djworker.task(acks_late=False)
def sleep_acked_early(seconds: float) -> float:
    """Acknowledged before it runs: a lost run is never delivered again."""
    time.sleep(seconds)
    return seconds


@djworker.task
def count_with_progress(steps: int, step_s: float) -> int:
    """Reports its progress after each step."""
    for done in range(1, steps + 1):
        time.sleep(step_s)
        djworker.progress(done, steps, note=f"step {done}")
    return steps


@djworker.task
def noop_reporting_progress(calls: int) -> None:
    """A no-op that reports progress ``calls`` times: for measuring what reporting costs."""
    for done in range(calls):
        djworker.progress(done, calls)
