"""The prefork pool: N forked child processes, for CPU-bound tasks and isolation.

The worker (the parent) consumes, dispatches and collects; it never runs a task. Each child has
one duplex pipe to the parent and runs one job at a time. A collector thread in the parent
(``prefork_collector``, this pool's base class) waits on every pipe and every child's exit at
once, so the main thread never blocks on a child. Because the parent sends a job only to an idle
child, it always knows which job each child runs: a child's death maps to exactly one job, which
is recorded FAILED (or redelivered, with ``reject_on_worker_lost``) with the child's exit signal
or code. This module holds what the worker calls (start, stop, apply_async, resize, terminate)
and the children's bookkeeping (forking, retiring, fair dispatch).

Children are forked by the pool's fork server (``prefork_server``), which the worker forks once
at start-up while it holds no database connection: no child is ever forked from a process that
holds one. Hard time limits are enforced by the collector (it kills the child's whole process
group); soft limits by a timer inside the child (``timelimits.alarm_soft_limit``).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import threading
import time
from collections.abc import Collection
from contextlib import AbstractContextManager
from typing import Any

from djworker import db
from djworker.concurrency.prefork_child_handle import Child
from djworker.concurrency.prefork_child_main import child_guard, child_main
from djworker.concurrency.prefork_collector import PreforkCollector
from djworker.concurrency.prefork_server import ForkServer
from djworker.exceptions import ConfigurationError
from djworker.job import Job, Limits
from djworker.log_safety import get_logger

logger = get_logger(__name__)

#: how long ``start`` waits for the first children to report ready
READY_TIMEOUT_S = 60.0


class PreforkPool(PreforkCollector):
    """Runs each job in one of N forked child processes (``--pool=prefork``)."""

    alias = "prefork"
    uses_processes = True
    supports_autoscale = True
    supports_soft_time_limit = True
    supports_hard_time_limit = True
    supports_terminate = True
    supports_recycling = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        import billiard

        self._ctx = billiard.get_context("fork")
        self._lock = threading.RLock()
        self._children: dict[int, Child] = {}  # by pid
        self._pending: collections.deque[Job] = collections.deque()
        self._slots = itertools.count(1)
        self._stopping = False
        self._closed = False
        self._wake_r, self._wake_w = os.pipe()
        self._collector = threading.Thread(
            target=self._collect, name="djworker-prefork-collector", daemon=True
        )
        self._server = ForkServer(self._ctx, self._child_entry)
        self.children_started = 0
        #: database connections children found inherited at birth (none, unless task code opened
        #: one in the worker before the pool started); each child discards them anyway
        self.inherited_connections = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        db.track_connections()
        # At start-up no other worker thread runs yet: with this thread's connections closed,
        # the worker holds none, so neither does the fork server, nor any child it forks later.
        db.close_before_fork()
        self._server.start(close_in_server=self._close_in_server)
        for _ in range(self.initial_size):
            self._spawn()
        self._wait_first_ready()
        self._collector.start()

    def _wait_first_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        with self._lock:
            children = list(self._children.values())
        for child in children:
            while not child.ready and child.exitcode is None and time.monotonic() < deadline:
                if child.conn.poll(0.05):
                    self._read(child)
                self._reap()
        limit = self.max_memory_per_child_kib
        fresh = max((c.rss_kib for c in children if c.ready), default=0)
        if limit and fresh > limit:
            self.stop(graceful=False)
            raise ConfigurationError(
                f"--max-memory-per-child={limit} KiB is below the {fresh} KiB a freshly started "
                f"pool process already uses, so every process would be replaced after each task; "
                f"use a limit above {fresh} KiB, such as {fresh * 3 // 2 // 1024 + 1}MB"
            )

    def stop(self, *, graceful: bool, timeout_s: float | None = None) -> list[Job]:
        with self._lock:
            self._stopping = True
            unstarted = list(self._pending)
            self._pending.clear()
            children = list(self._children.values())
            for child in children:
                if child.job is None and not child.retiring:
                    self._retire(child)
        if not graceful:
            for child in children:
                child.reported = True  # running jobs go back to the broker: nothing to record
                self._server.kill(child.pid)
            self._close(join_s=2.0)
            return unstarted
        if timeout_s:
            deadline = time.monotonic() + timeout_s
            while self._alive() and time.monotonic() < deadline:
                time.sleep(0.02)
            with self._lock:
                left = list(self._children.values())
            for child in left:
                logger.warning(
                    "pool process pid=%s did not exit in %ss; killing it", child.pid, timeout_s
                )
                self._server.kill(child.pid)
            self._close(join_s=5.0)
        return unstarted

    def _alive(self) -> int:
        with self._lock:
            return len(self._children)

    def _close(self, *, join_s: float) -> None:
        if not self._closed:
            logger.info(
                "prefork pool closed: %d pool process(es) started, %d database connection(s) "
                "inherited by them",
                self.children_started,
                self.inherited_connections,
            )
        self._closed = True
        self._wake()
        if self._collector.is_alive() and threading.current_thread() is not self._collector:
            self._collector.join(join_s)
        self._reap()
        with self._lock:
            children = list(self._children.values())
            self._children.clear()
        for child in children:
            child.conn.close()  # a child still running reads EOF and exits
        # The fork server exits once its children have; any left are killed with it.
        self._server.close(join_s=join_s)

    # -- work ------------------------------------------------------------------------------------

    def apply_async(self, job: Job) -> None:
        with self._lock:
            self._pending.append(job)
            self._dispatch()

    def withdraw(self, tokens: Collection[int]) -> list[Job]:
        wanted = set(tokens)
        with self._lock:
            withdrawn = [job for job in self._pending if job.token in wanted]
            if withdrawn:
                kept = [job for job in self._pending if job.token not in wanted]
                self._pending.clear()
                self._pending.extend(kept)
        return withdrawn

    def queued(self) -> list[Job]:
        with self._lock:
            return list(self._pending)

    @property
    def busy(self) -> int:
        with self._lock:
            return sum(1 for c in self._children.values() if c.job is not None)

    def info(self) -> dict[str, Any]:
        with self._lock:
            processes = [
                {
                    "pid": c.pid,
                    "slot": c.slot,
                    "tasks_done": c.tasks_done,
                    "rss_kib": c.rss_kib,
                    "task_id": c.job.task_id if c.job else None,
                }
                for c in self._children.values()
            ]
            queued = len(self._pending)
        return {
            **super().info(),
            "processes": processes,
            "queued": queued,
            "children_started": self.children_started,
            "inherited_connections": self.inherited_connections,
            "fork_server_pid": self._server.pid,
        }

    def guard(self, limits: Limits) -> AbstractContextManager[object]:
        return child_guard(limits)

    def on_grow(self, n: int) -> None:
        self._wake()  # the collector forks the new children

    def on_shrink(self, n: int) -> None:
        with self._lock:
            self._balance()

    def terminate_job(self, task_id: str) -> bool:
        with self._lock:
            child = next(
                (c for c in self._children.values() if c.job and c.job.task_id == task_id), None
            )
            if child is None or child.job is None:
                return False
            job = child.job
            child.job, child.reported, child.retiring = None, True, True
            self._server.kill(child.pid)
        self._report_lost(
            job,
            reason="terminated on request",
            exit_status="signal 9 (SIGKILL)",
            exception_class="Terminated",
        )
        self._wake()
        return True

    # -- children ----------------------------------------------------------------------------------

    def _spawn(self) -> Child:
        """Have the fork server fork one child."""
        slot = next(self._slots)
        options = {
            "max_tasks": self.max_tasks_per_child,
            "max_memory_kib": self.max_memory_per_child_kib,
        }
        conn, pid = self._server.spawn(slot, options)
        child = Child(slot=slot, pid=pid, conn=conn)
        with self._lock:
            self._children[child.pid] = child
            if self._stopping:  # stop() began while this child was being forked
                self._retire(child)
        self.children_started += 1
        logger.debug("pool process slot=%d pid=%s started", slot, child.pid)
        return child

    def _close_in_server(self) -> None:
        """First thing in a new fork server: close the worker's pipes, so a child holds none."""
        for child in list(self._children.values()):
            with contextlib.suppress(OSError):
                child.conn.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _child_entry(self, conn: Any, slot: int, server_pid: int, options: dict[str, Any]) -> None:
        child_main(
            conn,
            slot=slot,
            parent_pid=server_pid,
            run_job=self.run_job,
            max_tasks=options["max_tasks"],
            max_memory_kib=options["max_memory_kib"],
        )

    def _retire(self, child: Child) -> None:
        child.retiring = True
        with contextlib.suppress(OSError, ValueError):
            child.conn.send(None)

    def _balance(self) -> None:
        """Retire idle children above the target size (a busy one is never stopped)."""
        live = [c for c in self._children.values() if not c.retiring]
        for child in live[self.target_size :]:
            if child.idle:
                self._retire(child)

    def _dispatch(self) -> None:
        """Send queued jobs to idle children only (fair dispatch). Caller holds the lock."""
        if self._stopping:
            return
        for child in self._children.values():
            if not self._pending:
                return
            if not child.idle:
                continue
            job = self._pending.popleft()
            try:
                child.conn.send(job)
            except (OSError, ValueError):
                self._pending.appendleft(job)
                child.retiring = True  # it is dying; the collector reaps it
                continue
            child.job = job
            child.deadline = time.monotonic() + job.limits.hard_s if job.limits.hard_s else None
