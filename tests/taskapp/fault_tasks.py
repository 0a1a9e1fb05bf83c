"""Tasks of the fault suite: each run is written to a side channel, never to the result store.

A fault test needs to count how many times each task really ran, including runs whose outcome
was never stored (a killed worker, a lost connection). Each run appends one line
``<key> <pid>\\n`` to the file named by ``DJWORKER_FAULT_LOG`` in the worker's environment, and
``faults.run`` appends ``<key> <pid> end\\n`` when its run returns, so a test can tell the runs
a fault interrupted from those that completed. One ``write()`` of a short line to a file opened
with ``O_APPEND`` is atomic across processes, so threads, greenlets and prefork children can all
write to the same file.
"""

from __future__ import annotations

import os
import signal
import time

import djworker


def record_run(key: str, *, end: bool = False) -> None:
    """Append one line for this run of ``key`` to the side channel (``end``: it completed)."""
    line = f"{key} {os.getpid()}{' end' if end else ''}\n".encode()
    fd = os.open(os.environ["DJWORKER_FAULT_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@djworker.task(name="faults.run")
def run(key: str, seconds: float = 0.0) -> str:
    """Record the run, then sleep ``seconds`` (the window in which a fault can hit it)."""
    record_run(key)
    if seconds:
        time.sleep(seconds)
    record_run(key, end=True)
    return key


@djworker.task(name="faults.run_again_if_lost", reject_on_worker_lost=True)
def run_again_if_lost(key: str, seconds: float = 0.0) -> str:
    """``faults.run`` handed back to the broker when its process dies, instead of FAILED."""
    return str(run(key, seconds))


@djworker.task(name="faults.kill_own_process", reject_on_worker_lost=True)
def kill_own_process(key: str) -> None:
    """Record the run, then SIGKILL the process running it (a prefork child, or the worker)."""
    record_run(key)
    os.kill(os.getpid(), signal.SIGKILL)


@djworker.task(
    name="faults.kill_own_process_quietly", reject_on_worker_lost=True, ignore_result=True
)
def kill_own_process_quietly(key: str) -> None:
    """``kill_own_process`` for a task that stores no result: no row until it comes back."""
    record_run(key)
    os.kill(os.getpid(), signal.SIGKILL)


@djworker.task(name="faults.accept")
def accept(*args: object, key: object = "", **kwargs: object) -> None:
    """Take any arguments and record ``key`` (as ``ascii()``): the target of fuzzed messages."""
    record_run(ascii(key))
