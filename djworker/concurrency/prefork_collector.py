"""The prefork pool's collector: the parent's one thread that watches every child.

It waits on every child's pipe, the fork server's exit reports and a wake-up pipe at once, so
the worker's main thread never blocks on a child. Each pass reads the outcomes children sent,
records the job of a child that died (the pool sends a job only to an idle child, so a death
maps to exactly one job), kills a child past its job's hard time limit, forks replacements up
to the pool's size and starts a new fork server if the old one was lost.

``PreforkCollector`` is the base class of ``PreforkPool`` (``prefork.py``), which owns the
children and sends them work; the two share the pool's lock and its table of children.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import threading
import time
from abc import abstractmethod
from multiprocessing.connection import wait
from typing import Any

from djworker import db
from djworker.concurrency.base import BasePool
from djworker.concurrency.prefork_child_handle import Child, describe_exit
from djworker.concurrency.prefork_server import ForkServer
from djworker.job import Job
from djworker.log_safety import get_logger

logger = get_logger(__name__)

#: the collector wakes at least this often even when nothing happens
COLLECT_INTERVAL_S = 1.0


class PreforkCollector(BasePool):
    """The collector thread's work, over the state ``PreforkPool`` keeps."""

    _ctx: Any
    _lock: threading.RLock
    #: the live children, by pid
    _children: dict[int, Child]
    _pending: collections.deque[Job]
    _stopping: bool
    _closed: bool
    _wake_r: int
    _wake_w: int
    _server: ForkServer
    #: database connections children found inherited at birth (see ``PreforkPool``)
    inherited_connections: int

    @abstractmethod
    def _spawn(self) -> Child:
        """Have the fork server fork one child."""

    @abstractmethod
    def _retire(self, child: Child) -> None:
        """Ask ``child`` to exit once idle."""

    @abstractmethod
    def _balance(self) -> None:
        """Retire idle children above the target size. Caller holds the lock."""

    @abstractmethod
    def _dispatch(self) -> None:
        """Send queued jobs to idle children. Caller holds the lock."""

    @abstractmethod
    def _close_in_server(self) -> None:
        """First thing in a new fork server: close the worker's pipes."""

    @abstractmethod
    def _child_entry(self, conn: Any, slot: int, server_pid: int, options: dict[str, Any]) -> None:
        """What a forked child runs."""

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
