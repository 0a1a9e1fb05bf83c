"""Database-connection hygiene around forks, in one place.

A forked child shares its parent's sockets. If the child closed an inherited connection
politely, the driver would send the protocol's goodbye (PostgreSQL's Terminate message) on the
shared socket and the server would end the *parent's* session. So:

* the parent closes its connections in the forking thread just before it forks
  (``close_before_fork``), including a psycopg connection pool, which would otherwise hand the
  child live sockets;
* a new child discards whatever it still inherited (``discard_inherited``): connections of other
  parent threads and pools. Each socket's file descriptor is first replaced with ``/dev/null``
  (``os.dup2``), so even a driver whose close or finaliser insists on saying goodbye writes it
  into the void; then the connection is closed in the usual way, which frees the descriptor.
  psycopg 3 already skips its finaliser's close in a process other than the one that opened the
  connection, but an explicit ``close()`` does not, and other drivers have no such check;
* a retiring child closes its own connections (``close_own``, after
  ``worker_connections.close_task_connections``).

Connections are tracked with Django's ``connection_created`` signal so that those opened by
threads other than the forking one can still be found in the child.
"""

from __future__ import annotations

import os
import socket
import threading
import weakref
from typing import Any

from django.db import connections
from django.db.backends.signals import connection_created

from djworker.log_safety import get_logger

logger = get_logger(__name__)

#: raw driver connections opened in this process, with the pid that opened them
_opened: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_opened_lock = threading.Lock()
_tracking = False


def _new_lock_in_child() -> None:
    # A fork from one thread while another held the lock would leave the child's copy locked.
    global _opened_lock
    _opened_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def _remember(sender: Any, connection: Any, **kwargs: Any) -> None:
    raw = getattr(connection, "connection", None)
    if raw is None:
        return
    try:
        with _opened_lock:
            _opened[raw] = os.getpid()
    except TypeError:  # a driver connection that cannot be weakly referenced
        pass


def track_connections() -> None:
    """Start remembering every connection opened in this process (idempotent)."""
    global _tracking
    if not _tracking:
        connection_created.connect(_remember, dispatch_uid="djworker.db.track")
        _tracking = True


def close_before_fork() -> None:
    """Close this thread's connections and every connection pool, so a child inherits none."""
    track_connections()
    for conn in connections.all(initialized_only=True):
        try:
            conn.close()
        except Exception:
            logger.warning("alias=%s could not close before fork", conn.alias, exc_info=True)
        close_pool = getattr(conn, "close_pool", None)
        if close_pool is not None and conn.settings_dict.get("OPTIONS", {}).get("pool"):
            try:
                close_pool()
            except Exception:
                logger.warning(
                    "alias=%s could not close its pool before fork", conn.alias, exc_info=True
                )


def _socket_fd(raw: Any) -> int | None:
    pgconn = getattr(raw, "pgconn", None)  # psycopg 3: read the fd without touching the socket
    try:
        if pgconn is not None:
            return int(pgconn.socket)
        fileno = getattr(raw, "fileno", None)
        return int(fileno()) if fileno is not None else None
    except Exception:
        return None


def _neutralise(raw: Any, devnull: int) -> None:
    """Point the connection's fd at /dev/null, then close it: no byte reaches the server."""
    if getattr(raw, "closed", False):
        return
    fd = _socket_fd(raw)
    if fd is None:
        return
    os.dup2(devnull, fd)
    try:
        raw.close()
    except Exception:  # the driver may complain about the "socket"; nothing was sent anyway
        logger.debug("inherited connection fd=%s raised on close", fd, exc_info=True)


def discard_inherited() -> int:
    """In a new child: drop every inherited connection without network I/O; returns how many."""
    discarded = 0
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for conn in connections.all(initialized_only=True):
            raw = conn.connection
            if raw is not None:
                _neutralise(raw, devnull)
                discarded += 1
                # Forget it as Django would after a close, without calling the driver again.
                conn.connection = None
                conn.closed_in_transaction = False
                conn.in_atomic_block = False
                conn.savepoint_ids = []
                conn.needs_rollback = False
                conn.run_on_commit = []
        pools = getattr(type(connections["default"]), "_connection_pools", None)
        if isinstance(pools, dict):
            for pool in list(pools.values()):
                for raw in list(getattr(pool, "_pool", ())):
                    _neutralise(raw, devnull)
                    discarded += 1
                # The pool's threads did not survive the fork; the child builds its own pool.
                pool._closed = True
            pools.clear()
        parent_pid = os.getppid()
        with _opened_lock:
            inherited = [raw for raw, pid in _opened.items() if pid != os.getpid()]
            _opened.clear()
        for raw in inherited:
            if not getattr(raw, "closed", True):
                _neutralise(raw, devnull)
                discarded += 1
        discarded += _neutralise_other_db_sockets(devnull)
        logger.debug(
            "pid=%s parent=%s discarded %d inherited connection(s)",
            os.getpid(),
            parent_pid,
            discarded,
        )
    finally:
        os.close(devnull)
    return discarded


def _db_addresses() -> tuple[set[int], set[str]]:
    """TCP ports and Unix socket directories of the configured databases."""
    ports: set[int] = set()
    socket_dirs: set[str] = set()
    for settings in connections.settings.values():
        engine = str(settings.get("ENGINE", ""))
        host = str(settings.get("HOST") or "")
        default_port = 5432 if "postgresql" in engine else 3306 if "mysql" in engine else 0
        port = int(settings.get("PORT") or default_port)
        if host.startswith("/"):
            socket_dirs.add(host.rstrip("/") + "/")
        elif not host and "postgresql" in engine:  # libpq's default Unix socket directories
            socket_dirs.update({"/var/run/postgresql/", "/run/postgresql/", "/tmp/.s.PGSQL"})
        if port:
            ports.add(port)
    return ports, socket_dirs


def _neutralise_other_db_sockets(devnull: int) -> int:
    """Catch-all for connections made outside Django's handler (e.g. a LISTEN connection).

    Any inherited socket whose peer is a configured database port or socket directory is pointed
    at /dev/null. The object that owns it (unreachable from here) can then say nothing to the
    server, whatever it does. Called before the child opens any connection of its own.
    """
    ports, socket_dirs = _db_addresses()
    if not ports and not socket_dirs:
        return 0
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # not Linux: rely on the tracked connections only
        return 0
    count = 0
    for fd in fds:
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue  # not a socket (or already closed)
        try:
            peer = sock.getpeername()
        except OSError:
            peer = None
        finally:
            sock.detach()  # the fd stays open: it is not ours to close here
        by_port = isinstance(peer, tuple) and peer[1] in ports
        by_path = isinstance(peer, str) and any(peer.startswith(d) for d in socket_dirs)
        if by_port or by_path:
            os.dup2(devnull, fd)
            count += 1
    return count


def close_own() -> None:
    """In a retiring child: close Django's connections and pools politely.

    The child's task connections (``worker_connections``) are its caller's to close first.
    """
    for conn in connections.all(initialized_only=True):
        try:
            conn.close()
            if conn.settings_dict.get("OPTIONS", {}).get("pool"):
                conn.close_pool()  # type: ignore[attr-defined]
        except Exception:
            logger.warning("alias=%s could not close on exit", conn.alias, exc_info=True)
