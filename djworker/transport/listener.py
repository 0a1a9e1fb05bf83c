"""``NotifyListener``: wakes an idle ``django://`` consumer on PostgreSQL's NOTIFY."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from time import monotonic, sleep
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connections

from djworker import worker_connections
from djworker.log_safety import get_logger

if TYPE_CHECKING:
    import psycopg

logger = get_logger(__name__)

NOTIFY_CHANNEL_PREFIX = "djworker_q_"
# After a failed LISTEN, poll this long before trying again, so a setup that cannot LISTEN
# (e.g. PgBouncer in transaction mode) logs once a minute rather than on every poll.
RELISTEN_AFTER_S = 60.0


def notify_channel(queue: str) -> str:
    """The LISTEN/NOTIFY channel of ``queue``.

    Hashed because a queue name may be longer than PostgreSQL's 63-byte identifiers or hold
    characters they cannot; the hash is lower-case hex, so it needs no quoting rules.
    """
    return NOTIFY_CHANNEL_PREFIX + hashlib.sha256(queue.encode()).hexdigest()[:24]


def sql_listen(command: str, channel: str) -> str:
    """``LISTEN`` or ``UNLISTEN`` of ``channel``, which ``notify_channel`` made safe to quote."""
    return f'{command} "{channel}"'


@dataclass
class Wake:
    """What one ``NotifyListener.wait`` heard: queues with a message due now, and countdowns."""

    ready: set[str] = field(default_factory=set)
    #: the earliest due time (seconds since the epoch) a countdown message announced, if any
    next_due_epoch_s: float | None = None
    #: True if the listener could not listen: the caller must poll as if every queue woke
    blind: bool = False

    def add(self, queue: str, payload: str) -> None:
        try:
            due = float(payload) if payload else None
        except ValueError:
            due = None  # not ours to read: treat it as a message due now
        if due is None:
            self.ready.add(queue)
        elif self.next_due_epoch_s is None or due < self.next_due_epoch_s:
            self.next_due_epoch_s = due


class NotifyListener:
    """LISTENs for new messages on PostgreSQL, on the worker consumer's own connection if it can.

    In a worker whose consumer thread runs no task (``worker_connections.listens_here``) the
    channels are LISTENed on that thread's Django connection, which the worker keeps open: the
    notifications arrive on the socket the claims use, and the worker holds one session fewer.
    A notification that comes while a claim runs on it is kept by psycopg (3.2.4 and later) for
    the next ``wait``. Anywhere else (a plain kombu consumer, a green pool, a pooled alias, the
    solo pool) it opens a dedicated autocommit psycopg connection, built from Django's own
    connection parameters so it reaches the same database (the test database under pytest too).

    Whenever the connection LISTENing changes (Django reopened the shared one, or the mode
    changed), the next ``wait`` comes back blind: notifications may have been missed meanwhile.
    Failures are logged and degrade to plain polling: the next ORM poll is what reports a
    database outage to kombu.
    """

    def __init__(self, *, alias: str) -> None:
        self.alias = alias
        self._conn: psycopg.Connection[Any] | None = None  # the connection LISTENing, if any
        self._shared = False  # _conn is the thread's Django connection, not one of ours
        self._channels: dict[str, str] = {}  # channel -> queue
        self._retry_at = 0.0
        self._missed = False  # the LISTENing connection changed: notifications may be lost

    @property
    def listening(self) -> bool:
        return self._conn is not None

    @property
    def shares_connection(self) -> bool:
        """Whether it LISTENs on the thread's Django connection (no session of its own)."""
        return self._conn is not None and self._shared

    def listen(self, queues: Iterable[str]) -> None:
        """LISTEN on exactly the channels of ``queues``; call before polling so no wake is lost."""
        wanted = {notify_channel(queue): queue for queue in queues}
        if self._conn is None and monotonic() < self._retry_at:
            return
        import psycopg

        try:
            conn, shared = self._connection()
            if conn is not self._conn:
                self._drop()
                self._conn, self._shared, self._missed = conn, shared, True
            if wanted == self._channels:
                return
            for channel in wanted.keys() - self._channels.keys():
                conn.execute(sql_listen("LISTEN", channel))
            for channel in self._channels.keys() - wanted.keys():
                conn.execute(sql_listen("UNLISTEN", channel))
            self._channels = wanted
        except (psycopg.Error, DatabaseError):
            logger.warning(
                "LISTEN failed; polling without it for retry_s=%s", RELISTEN_AFTER_S, exc_info=True
            )
            self.close()
            self._retry_at = monotonic() + RELISTEN_AFTER_S

    def _connection(self) -> tuple[psycopg.Connection[Any], bool]:
        """The connection to LISTEN on now, and whether it is the thread's Django connection."""
        import psycopg

        if worker_connections.listens_here(self.alias):
            wrapper = connections[self.alias]
            if wrapper.in_atomic_block and self._conn is not None:
                return self._conn, self._shared  # LISTEN would wait for that transaction
            wrapper.ensure_connection()
            if isinstance(wrapper.connection, psycopg.Connection):
                return wrapper.connection, True
        if self._conn is not None and not self._shared:
            return self._conn, False
        params = connections[self.alias].get_connection_params()
        for django_only in ("cursor_factory", "context"):
            params.pop(django_only, None)
        return psycopg.connect(**params, autocommit=True), False

    def _drop(self) -> None:
        """Stop LISTENing on the current connection: close it if ours, UNLISTEN if shared."""
        conn, self._conn, self._channels = self._conn, None, {}
        if conn is None or conn.closed:
            return
        try:
            if self._shared:
                # The thread goes on using it: stray notifications would pile up in psycopg.
                if not conn.info.transaction_status:  # idle, not inside a transaction
                    conn.execute("UNLISTEN *")
            else:
                conn.close()
        except Exception:
            logger.debug("leaving the LISTEN connection failed", exc_info=True)

    def wait(self, timeout_s: float) -> Wake:
        """Return on a notification or after ``timeout_s``, whichever comes first.

        Notifications that arrived while the consumer was busy are in the socket already and
        return at once, all together: one poll answers every one of them.
        """
        wake = Wake()
        conn = self._conn
        if conn is not None and self._shared and connections[self.alias].connection is not conn:
            wake.blind = True  # Django closed it since: the next listen() takes the new one
            return wake
        if conn is None:
            sleep(timeout_s)
            wake.blind = True
            return wake
        if self._missed:
            # LISTENing anew: what was published meanwhile announced itself to nobody.
            self._missed = False
            wake.blind = True
            timeout_s = 0.0
        import psycopg

        started = monotonic()
        try:
            for notify in conn.notifies(timeout=timeout_s, stop_after=1):
                self._heard(wake, notify)
            for notify in conn.notifies(timeout=0):
                self._heard(wake, notify)
        except psycopg.Error:
            logger.warning("waiting for NOTIFY failed; polling without it", exc_info=True)
            if self._shared:
                connections[self.alias].close()  # broken: the next claim reconnects
            self.close()
            sleep(max(0.0, timeout_s - (monotonic() - started)))
            wake.blind = True
        return wake

    def _heard(self, wake: Wake, notify: psycopg.Notify) -> None:
        queue = self._channels.get(notify.channel)
        if queue is not None:
            wake.add(queue, notify.payload)

    def close(self) -> None:
        self._drop()
        self._shared = False
