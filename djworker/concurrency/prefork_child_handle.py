"""The parent's handle on one prefork child: its state, how it is killed, how its exit reads.

The code that runs inside the child is in ``prefork_child_main``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from djworker.job import Job


def describe_exit(exitcode: int | None) -> str:
    """``-9`` -> ``"signal 9 (SIGKILL)"``; ``3`` -> ``"exit code 3"``."""
    if exitcode is None:
        return "unknown exit status"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown signal"
        return f"signal {-exitcode} ({name})"
    return f"exit code {exitcode}"


@dataclass(eq=False)
class Child:
    """The parent's view of one pool process."""

    slot: int
    pid: int
    conn: Any  # billiard duplex Connection, the worker's end
    ready: bool = False
    job: Job | None = None
    deadline: float | None = None
    tasks_done: int = 0
    rss_kib: int = 0
    retiring: bool = False
    #: the parent already reported this child's job (time limit, terminate, cold stop)
    reported: bool = False
    born: float = field(default_factory=time.monotonic)
    #: set when the fork server reports the exit (negative: the signal that ended it)
    exitcode: int | None = None

    @property
    def idle(self) -> bool:
        return self.ready and self.job is None and not self.retiring


def kill_group(pid: int) -> None:
    """SIGKILL a child and every process it started (it leads its own process group)."""
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)
