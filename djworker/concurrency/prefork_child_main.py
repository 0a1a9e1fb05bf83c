"""What runs inside a prefork child: the loop that runs jobs, and what a child does at birth.

The parent's handle on a child (its state, how it is killed) is in ``prefork_child_handle``.

A child is forked from the pool's fork server, itself a fork of the worker (Django is already
set up and every task module imported), so it does no initialisation of its own beyond making
the fork safe: it leads its own process group (so its grandchildren can be stopped with it),
asks the kernel to kill it if the fork server dies (which dies with the worker), restores
default signal handling (the worker coordinates shutdown, so SIGINT from a terminal is ignored)
and discards any database connection it inherited without a byte of I/O (there should be none).

Messages on the pipe, parent -> child: a ``Job`` to run, or ``None`` to retire.
Child -> parent: ``("ready", rss_kib, inherited_connections)`` once, then
``("done", outcome, rss_kib, retiring)`` after each job.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from djworker import db, signals, worker_connections
from djworker.concurrency.timelimits import alarm_soft_limit
from djworker.job import Job, Limits, Outcome
from djworker.log_safety import get_logger

logger = get_logger(__name__)

PR_SET_PDEATHSIG = 1
_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def current_rss_kib() -> int:
    """Resident memory now (not the peak), from /proc/self/statm."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE_KIB
    except (OSError, IndexError, ValueError):
        import resource  # not Linux: the peak is the best figure there is

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        logger.warning("prctl(PR_SET_PDEATHSIG) unavailable; a pool process may outlive the worker")
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _reset_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C reaches the whole group; the worker decides
    for signum in (signal.SIGTERM, signal.SIGQUIT, signal.SIGUSR1, signal.SIGALRM, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)


def set_title(role: str) -> None:
    try:
        import setproctitle  # type: ignore[import-not-found]
    except ImportError:
        return
    setproctitle.setproctitle(f"djworker: {role}")


def child_guard(limits: Limits) -> AbstractContextManager[object]:
    """The pool's guard inside a child; the hard limit is the worker's to enforce."""
    if limits.soft_s:
        return alarm_soft_limit(limits.soft_s)
    return contextlib.nullcontext()


def child_main(
    conn: Any,
    *,
    slot: int,
    parent_pid: int,
    run_job: Callable[[Job], Outcome],
    max_tasks: int | None,
    max_memory_kib: int | None,
) -> None:
    """Body of a pool process: run jobs until told to retire or a recycling limit is reached."""
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    die_with_parent(parent_pid)
    _reset_signals()
    inherited = db.discard_inherited()
    set_title(f"pool process {slot}")
    signals.send_robust(signals.worker_process_init, None, slot=slot)
    conn.send(("ready", current_rss_kib(), inherited))
    done = 0
    try:
        while True:
            try:
                job = conn.recv()
            except (EOFError, OSError):
                return  # the worker is gone
            if job is None:
                return
            outcome = run_job(job)
            done += 1
            rss_kib = current_rss_kib()
            retiring = bool(
                (max_tasks and done >= max_tasks) or (max_memory_kib and rss_kib > max_memory_kib)
            )
            if retiring and max_memory_kib and rss_kib > max_memory_kib:
                logger.info(
                    "pool process pid=%s rss_kib=%d over max_memory_kib=%d; replacing it",
                    os.getpid(),
                    rss_kib,
                    max_memory_kib,
                )
            conn.send(("done", outcome, rss_kib, retiring))
            if retiring:
                return
    finally:
        worker_connections.close_task_connections()
        db.close_own()
