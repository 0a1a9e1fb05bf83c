"""The worker's own database connections, kept open whatever ``CONN_MAX_AGE`` says.

``execute()`` treats each run like a request: Django's connections are checked before and
after it, and with ``CONN_MAX_AGE = 0`` (Django's default) a connection the run opened is
closed when it ends. That is right for task code, which may rely on it, but the worker's own
writes around the run (the RUNNING mark, the stored result, a retry) would then open a
PostgreSQL session per task, which costs the server and the worker far more than the writes.

So in a worker process (``enable()``) each thread that runs tasks keeps two sets of
connections, one per database alias each:

* its **own**: the thread's Django connections outside a run. The consumer's (the
  ``django://`` transport, refusals), the control tick's and, in each slot, the result writes
  use them. They stay open across tasks and close only when found unusable (``keep_open``).
* the **task's**: what ``django.db.connections`` gives inside a run (``task_connections``).
  They follow ``CONN_MAX_AGE`` and ``CONN_HEALTH_CHECKS`` exactly as in a request, and are kept
  between the runs of the same slot when ``CONN_MAX_AGE`` asks for that. A run that makes no
  query opens none.

Inside a run, ``own_connection(alias)`` lends the slot's own connection to a result write.
An alias using Django's connection pool (``OPTIONS["pool"]``) is left alone: a pooled
connection is handed back, not closed, so it already costs no session. So are green pools,
whose connections come from such a pool (their database budget).
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from collections.abc import Iterator
from typing import Any

from django.db import DatabaseError, connections

from djworker import green
from djworker.log_safety import get_logger

logger = get_logger(__name__)

_enabled = False
#: per thread (per greenlet on a green pool): ``task``, the task's connections by alias, kept
#: between runs; ``own``, the thread's own connections while a run has lent them out
_local = threading.local()


def _fresh_local_in_child() -> None:
    # A forked pool process must not think it is inside the run of the thread that forked.
    global _local
    _local = threading.local()


os.register_at_fork(after_in_child=_fresh_local_in_child)


def enable() -> None:
    """Give this worker process its own connections (inherited by pool processes)."""
    global _enabled
    _enabled = True
    from djworker import db

    db.track_connections()  # own connections are discarded by pool processes like any other


def enabled() -> bool:
    return _enabled


def pooled(alias: str) -> bool:
    """True if ``alias`` hands connections back to Django's pool instead of closing them."""
    return bool(connections.settings[alias].get("OPTIONS", {}).get("pool"))


def keep_open(*, listen: bool = False) -> None:
    """Keep this thread's Django connections open across tasks (closed only when unusable).

    For the threads that do the worker's own work: the consumer's and the control tick's.
    ``close_old_connections()`` then closes them only when an error left them unusable. With
    ``listen``, the ``django://`` transport may also LISTEN on them (see ``listens_here``).
    """
    if not _enabled:
        return
    _local.listen = listen
    for alias in connections:
        if not pooled(alias):
            _never_obsolete(connections[alias])


def listens_here(alias: str) -> bool:
    """Whether the ``django://`` transport may LISTEN on this thread's connection for ``alias``.

    Only where ``keep_open(listen=True)`` was called: the consumer's thread of a worker whose
    pool runs no task on it. A run lends the thread's own connection to its result writes after
    checking that its socket is not readable (``own_connection``), and a notification waiting
    there would look like a server gone. Never under a green pool or for a pooled alias: their
    connections go back to a pool, still LISTENing, for another greenlet to take.
    """
    if not (_enabled and getattr(_local, "listen", False)) or green.patched or pooled(alias):
        return False
    return bool(connections[alias].settings_dict.get("AUTOCOMMIT", True))


def _never_obsolete(connection: Any) -> None:
    if connection.settings_dict.get("CONN_MAX_AGE", 0) is not None:
        # A copy: the dict is shared with the settings and every other thread's wrapper.
        connection.settings_dict = {**connection.settings_dict, "CONN_MAX_AGE": None}
    connection.close_at = None


@contextlib.contextmanager
def task_connections() -> Iterator[None]:
    """During a run, ``django.db.connections`` gives the task's connections, not the worker's.

    Not in a worker process, or called inside a transaction (a test running ``execute()``
    under ``atomic``), every connection stays as it is.
    """
    if not _enabled or green.patched or getattr(_local, "own", None) is not None:
        # A green pool's slot is a greenlet that ends when the queue runs dry, and its
        # connections come from the budget's pool: it keeps one connection, as before.
        yield
        return
    own = {alias: connections[alias] for alias in connections if not pooled(alias)}
    if not own or any(connection.in_atomic_block for connection in own.values()):
        yield
        return
    task = getattr(_local, "task", None)
    if task is None:
        task = _local.task = {}
    for alias, connection in own.items():
        _never_obsolete(connection)
        if alias not in task:
            task[alias] = connections.create_connection(alias)
        connections[alias] = task[alias]
    _local.own = own
    try:
        yield
    finally:
        _local.own = None
        for alias, connection in own.items():
            connections[alias] = connection


@contextlib.contextmanager
def own_connection(alias: str) -> Iterator[None]:
    """Inside a run, lend the slot's own connection for ``alias`` to one of the worker's writes.

    Outside a run (the consumer's or the control tick's writes, a publisher) the thread's
    connection already is its own and nothing changes. A transaction the task left open on its
    connection is not joined: a result neither waits for it nor rolls back with it.
    """
    own = getattr(_local, "own", None)
    if own is None or alias not in own or connections[alias] is own[alias]:
        yield
        return
    lent = connections[alias]
    connection = own[alias]
    _close_if_server_left(connection)
    connections[alias] = connection
    try:
        yield
    finally:
        connections[alias] = lent
        if connection.errors_occurred and not connection.in_atomic_block:
            # Reopened by the next write rather than failing on a dead socket for good.
            connection.close_if_unusable_or_obsolete()


def _close_if_server_left(connection: Any) -> None:
    """Close an idle connection the server has written to: it said goodbye (a restart, a
    terminated backend). Found without a round trip: the socket is readable."""
    raw = connection.connection
    pgconn = getattr(raw, "pgconn", None)
    if pgconn is None or connection.in_atomic_block:
        return
    try:
        if hasattr(select, "poll"):
            # Not select where poll exists: select refuses descriptors past 1024.
            poller = select.poll()
            poller.register(pgconn.socket, select.POLLIN)
            readable = bool(poller.poll(0))
        else:
            readable = bool(select.select([pgconn.socket], [], [], 0)[0])
    except Exception:  # no socket any more: as good as gone
        readable = True
    if readable:
        logger.info(
            "alias=%s the server closed the worker's connection; reopening it", connection.alias
        )
        with contextlib.suppress(DatabaseError):
            connection.close()
        connection.connection = None


def close_task_connections() -> None:
    """Close this thread's task connections (a slot that ends; its own ones are Django's)."""
    task = getattr(_local, "task", None) or {}
    for connection in task.values():
        try:
            connection.close()
        except Exception:
            logger.warning(
                "alias=%s could not close a task connection", connection.alias, exc_info=True
            )
    _local.task = None
