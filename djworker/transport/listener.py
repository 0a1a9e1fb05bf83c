"""``NotifyListener``: wakes an idle ``django://`` consumer on PostgreSQL's NOTIFY."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from time import monotonic, sleep
from typing import TYPE_CHECKING, Any

from django.db import connections

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
    """A dedicated autocommit psycopg connection LISTENing for new messages on PostgreSQL.

    Built from Django's own connection parameters, so it reaches the same database (the test
    database under pytest too). Failures are logged and degrade to plain polling: the next ORM
    poll is what reports a database outage to kombu.
    """

    def __init__(self, *, alias: str) -> None:
        self.alias = alias
        self._conn: psycopg.Connection[Any] | None = None
        self._channels: dict[str, str] = {}  # channel -> queue
        self._retry_at = 0.0

    @property
    def listening(self) -> bool:
        return self._conn is not None

    def listen(self, queues: Iterable[str]) -> None:
        """LISTEN on exactly the channels of ``queues``; call before polling so no wake is lost."""
        wanted = {notify_channel(queue): queue for queue in queues}
        if self._conn is not None and wanted == self._channels:
            return
        if self._conn is None and monotonic() < self._retry_at:
            return
        import psycopg
        from psycopg import sql

        try:
            if self._conn is None:
                params = connections[self.alias].get_connection_params()
                for django_only in ("cursor_factory", "context"):
                    params.pop(django_only, None)
                self._conn = psycopg.connect(**params, autocommit=True)
                self._channels = {}
            for channel in wanted.keys() - self._channels.keys():
                self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            for channel in self._channels.keys() - wanted.keys():
                self._conn.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(channel)))
            self._channels = wanted
        except psycopg.Error:
            logger.warning(
                "LISTEN failed; polling without it for retry_s=%s", RELISTEN_AFTER_S, exc_info=True
            )
            self.close()
            self._retry_at = monotonic() + RELISTEN_AFTER_S

    def wait(self, timeout_s: float) -> Wake:
        """Return on a notification or after ``timeout_s``, whichever comes first.

        Notifications that arrived while the consumer was busy are in the socket already and
        return at once, all together: one poll answers every one of them.
        """
        wake = Wake()
        if self._conn is None:
            sleep(timeout_s)
            wake.blind = True
            return wake
        import psycopg

        started = monotonic()
        try:
            for notify in self._conn.notifies(timeout=timeout_s, stop_after=1):
                self._heard(wake, notify)
            for notify in self._conn.notifies(timeout=0):
                self._heard(wake, notify)
        except psycopg.Error:
            logger.warning("waiting for NOTIFY failed; polling without it", exc_info=True)
            self.close()
            sleep(max(0.0, timeout_s - (monotonic() - started)))
            wake.blind = True
        return wake

    def _heard(self, wake: Wake, notify: psycopg.Notify) -> None:
        queue = self._channels.get(notify.channel)
        if queue is not None:
            wake.add(queue, notify.payload)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._channels = {}
        if conn is not None:
            try:
                conn.close()
            except Exception:
                logger.debug("closing the LISTEN connection failed", exc_info=True)
