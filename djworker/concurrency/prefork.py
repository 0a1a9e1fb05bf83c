"""The prefork pool: N forked child processes, for CPU-bound tasks and isolation.

The worker (the parent) consumes, dispatches and collects; it never runs a task. Each child has
one duplex pipe to the parent and runs one job at a time. A collector thread in the parent waits
on every pipe and every child's exit sentinel at once, so the main thread never blocks on a
child. Because the parent sends a job only to an idle child, it always knows which job each child
runs: a child's death maps to exactly one job, which is recorded FAILED (or redelivered, with
``reject_on_worker_lost``) with the child's exit signal or code.

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
import signal
import threading
import time
from collections.abc import Collection
from contextlib import AbstractContextManager
from multiprocessing.connection import wait
from typing import Any

from djworker import db
from djworker.concurrency.base import BasePool
from djworker.concurrency.prefork_child_handle import Child, describe_exit
from djworker.concurrency.prefork_child_main import child_guard, child_main
from djworker.concurrency.prefork_server import ForkServer
from djworker.exceptions import ConfigurationError
from djworker.job import Job, Limits
from djworker.log_safety import get_logger

logger = get_logger(__name__)

#: how long ``start`` waits for the first children to report ready
READY_TIMEOUT_S = 60.0
#: the collector wakes at least this often even when nothing happens
COLLECT_INTERVAL_S = 1.0


class PreforkPool(BasePool):
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

    # -- the collector thread ----------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _collect(self) -> None:
        try:
            while not self._closed:
                self._collect_once()
        except Exception:
            logger.exception("the prefork collector failed; pool processes will be killed")
            self._abandon_children()
        finally:
            from django.db import connections

            connections.close_all()

    def _collect_once(self) -> None:
        with self._lock:
            children = list(self._children.values())
            deadlines = [c.deadline for c in children if c.job is not None and c.deadline]
        timeout = 0.0 if self._server.has_exits else COLLECT_INTERVAL_S
        if deadlines:
            timeout = max(0.0, min(timeout, min(deadlines) - time.monotonic()))
        waitables: list[Any] = [self._wake_r, *(c.conn for c in children)]
        if self._server.lost is None:
            waitables.append(self._server)
        ready = wait(waitables, timeout)
        if self._wake_r in ready:
            os.read(self._wake_r, 4096)
        for child in children:
            if child.conn in ready:
                self._read(child)
        if self._server in ready or self._server.has_exits:
            self._reap()
        if self._server.lost is not None:
            self._replace_server()
        self._enforce_hard_limits()
        self._maintain()
        with self._lock:
            self._dispatch()

    def _read(self, child: Child) -> None:
        while True:
            try:
                if not child.conn.poll():
                    return
                message = child.conn.recv()
            except (EOFError, OSError):
                return
            if message[0] == "ready":
                _, rss_kib, inherited = message
                if inherited:
                    logger.warning(
                        "pool process pid=%s inherited %d database connection(s) from the "
                        "worker and discarded them without a byte on the wire",
                        child.pid,
                        inherited,
                    )
                with self._lock:
                    child.ready, child.rss_kib = True, rss_kib
                    self.inherited_connections += inherited
                    if self._stopping and not child.retiring:
                        self._retire(child)
                    self._dispatch()
                continue
            _, outcome, rss_kib, retiring = message
            with self._lock:
                child.rss_kib = rss_kib
                child.tasks_done += 1
                already_reported = child.reported or child.job is None
                child.job, child.deadline = None, None
                if retiring:
                    child.retiring = True
                elif self._stopping:
                    self._retire(child)
                else:
                    self._balance()
                self._dispatch()
            if not already_reported:
                self.on_outcome(outcome)

    def _reap(self) -> None:
        """Handle every exit the fork server reported (it has also killed the grandchildren)."""
        for pid, exitcode in self._server.exits():
            with self._lock:
                child = self._children.get(pid)
            if child is not None:
                child.exitcode = exitcode
                self._on_exit(child)

    def _on_exit(self, child: Child) -> None:
        self._read(child)  # an outcome sent just before exiting still counts
        status = describe_exit(child.exitcode)
        with self._lock:
            self._children.pop(child.pid, None)
            job = None if child.reported else child.job
            child.job = None
        child.conn.close()
        if job is not None:
            logger.error(
                "pool process pid=%s died running id=%s: %s", child.pid, job.task_id, status
            )
            self._report_lost(
                job,
                reason=f"the pool process (pid {child.pid}) running the task exited with {status}",
                exit_status=status,
            )
        elif not child.retiring and not self._stopping:
            logger.warning("pool process pid=%s exited unexpectedly with %s", child.pid, status)
        else:
            logger.debug(
                "pool process pid=%s retired after %d task(s)", child.pid, child.tasks_done
            )

    def _enforce_hard_limits(self) -> None:
        now = time.monotonic()
        expired: list[Job] = []
        with self._lock:
            for child in self._children.values():
                if child.job is not None and child.deadline is not None and now >= child.deadline:
                    expired.append(child.job)
                    child.job, child.deadline = None, None
                    child.reported, child.retiring = True, True
                    self._server.kill(child.pid)
        for job in expired:
            self._report_lost(
                job,
                reason=f"hard time limit of {job.limits.hard_s}s exceeded",
                exit_status="signal 9 (SIGKILL)",
                exception_class="TimeLimitExceeded",
            )

    def _maintain(self) -> None:
        """Fork replacements until the live children reach the target size."""
        while not self._stopping and not self._closed and self._server.lost is None:
            with self._lock:
                live = sum(1 for c in self._children.values() if not c.retiring)
            if live >= self.target_size:
                return
            try:
                self._spawn()
            except Exception:
                logger.exception(
                    "could not start a pool process; retrying in %ss", COLLECT_INTERVAL_S
                )
                return

    def _replace_server(self) -> None:
        """The fork server died (and its children with it): record their jobs, start another.

        Unlike the first, this fork server is forked while other worker threads may hold
        database connections; its children discard whatever they inherit (``djworker.db``). It
        is forked by this thread, so the kernel ends it when this thread ends, at pool close.
        If it cannot be started (the likely cause of the loss is memory pressure), the next
        collector pass tries again.
        """
        if self._stopping or self._closed:
            return
        if self._children:
            logger.error("%s; its pool processes died with it", self._server.lost)
        self._abandon_children()
        self._server.close(join_s=1.0)
        db.close_before_fork()
        server = ForkServer(self._ctx, self._child_entry)
        try:
            server.start(close_in_server=self._close_in_server)
        except Exception:
            logger.exception(
                "could not start a new fork server; retrying in %ss", COLLECT_INTERVAL_S
            )
            time.sleep(COLLECT_INTERVAL_S)
            return
        self._server = server
        logger.warning("fork server pid=%s started in place of the lost one", server.pid)

    def _abandon_children(self) -> None:
        """Kill every child now and record its task as for any child that dies."""
        with self._lock:
            children = list(self._children.values())
        for child in children:
            self._server.kill(child.pid)  # a no-op once the fork server is gone
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)  # grandchildren of a child already reaped
            if child.exitcode is None:
                child.exitcode = -signal.SIGKILL
            self._on_exit(child)

    def _report_lost(
        self, job: Job, *, reason: str, exit_status: str, exception_class: str = ""
    ) -> None:
        self.on_outcome(
            self.executor.record_lost(
                job, reason=reason, exit_status=exit_status, exception_class=exception_class
            )
        )
