"""Soft time limits: raise ``SoftTimeLimitExceeded`` inside a task that ran too long.

Two mechanisms. A task on the main thread of its process (solo pool, prefork child) gets a
SIGALRM timer (``alarm_soft_limit``). Tasks on other threads get a single watchdog thread that
raises the exception asynchronously in the late thread (``SoftLimitWatchdog``). Either lands at
the next Python bytecode, so a task stuck inside one long C call sees it when that call returns.
"""

from __future__ import annotations

import contextlib
import ctypes
import heapq
import itertools
import signal
import threading
import time
from collections.abc import Iterator

from djworker.exceptions import SoftTimeLimitExceeded


@contextlib.contextmanager
def alarm_soft_limit(soft_s: float) -> Iterator[None]:
    """Raise ``SoftTimeLimitExceeded`` in this (main) thread after ``soft_s`` seconds."""

    def on_alarm(signum: int, frame: object) -> None:
        raise SoftTimeLimitExceeded(f"soft time limit of {soft_s}s exceeded")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, soft_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> bool:
    affected = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)
    )
    return int(affected) == 1


class SoftLimitWatchdog:
    """Arms and disarms soft limits for (thread, run) pairs; one thread serves them all."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int]] = []  # (deadline, run number, thread id)
        self._live: dict[int, int] = {}  # run number -> thread id, while the run is armed
        self._runs = itertools.count(1)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def arm(self, soft_s: float) -> int:
        """Arm a limit for the calling thread; returns a handle for ``disarm``."""
        run = next(self._runs)
        with self._cond:
            self._live[run] = threading.get_ident()
            heapq.heappush(self._heap, (time.monotonic() + soft_s, run, threading.get_ident()))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="djworker-soft-limits", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return run

    def disarm(self, run: int) -> None:
        with self._cond:
            self._live.pop(run, None)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while not self._stopped:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, run, thread_id = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                heapq.heappop(self._heap)
                if self._live.pop(run, None) is not None:
                    raise_in_thread(thread_id, SoftTimeLimitExceeded)
