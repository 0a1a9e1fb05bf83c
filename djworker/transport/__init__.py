"""The ``django://`` kombu transport: queues kept in a table of the Django database.

A kombu *virtual* transport (the same family as ``memory://`` and ``redis://``): kombu keeps
exchanges and bindings in memory and calls ``_put``/``_get``/``_purge``/``_size``/``_delete`` on
the channel; this package stores each message as a ``QueueMessage`` row.

Claiming a message does not delete it. It takes a *lease*: a fresh token in ``lease`` and
``visible_at`` pushed ``visibility_timeout`` seconds ahead. Ack deletes the row, reject with
requeue and channel close make it visible again at once, and a worker that dies simply stops
renewing, so its messages reappear once the timeout runs out. While a connection holds leases a
daemon thread renews them every ``visibility_timeout / 3`` seconds.

Speed: a consumer claims as many messages as its prefetch window has room for in one
transaction, deletes acked rows in batches (``leases``), and commits those writes without
waiting for the disk on PostgreSQL (``database.redeliverable_transaction``): each can only
cause a redelivery if lost, never a lost message. The publisher's insert stays fully durable.

Transport options: ``visibility_timeout`` (seconds, default 3600 like kombu's redis transport),
``polling_interval`` (seconds an idle consumer waits between polls; default 1.0 on PostgreSQL,
where LISTEN/NOTIFY wakes it early, and 0.1 elsewhere, where polling is the only way to notice
new messages) and ``database`` (the ``DATABASES`` alias, default ``"default"``).
"""

from __future__ import annotations

from queue import Empty
from time import monotonic, sleep
from typing import Any

import kombu.transport
from django.db import DatabaseError, InterfaceError, InternalError, OperationalError, connections
from django.db.models import Min
from django.utils import timezone
from kombu.transport import virtual

from djworker.log_safety import get_logger
from djworker.models.broker import QueueMessage
from djworker.transport.channel import Channel
from djworker.transport.database import database_errors
from djworker.transport.leases import ACK_FLUSH_S, LeaseKeeper
from djworker.transport.listener import NotifyListener

__all__ = ["Channel", "Transport", "register_transport"]

logger = get_logger(__name__)

ALIAS = "django"
DEFAULT_VISIBILITY_TIMEOUT_S = 3600.0
DEFAULT_POLLING_INTERVAL_S = 0.1
LISTENING_POLLING_INTERVAL_S = 1.0


def register_transport() -> None:
    """Make ``kombu.Connection("django://")`` resolve to this module's ``Transport``."""
    kombu.transport.TRANSPORT_ALIASES[ALIAS] = "djworker.transport:Transport"


class Transport(virtual.Transport):
    """The ``django://`` transport; see the module docstring for its options."""

    Channel = Channel
    driver_type = "sql"
    driver_name = "django"
    # kombu's retry policy then treats a lost database like a lost broker connection.
    connection_errors = (  # type: ignore[assignment]
        *virtual.Transport.connection_errors,
        OperationalError,
        InterfaceError,
    )
    # A transaction aborted under the channel is worth a new one. A data error (a value the
    # database refuses) is not: it would come back on every new connection, so it is left to
    # the code that wrote the value.
    channel_errors = (*virtual.Transport.channel_errors, InternalError)  # type: ignore[assignment]

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        options = client.transport_options
        self.alias: str = options.get("database", "default")
        self.visibility_timeout_s = float(
            options.get("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT_S)
        )
        self.listens = connections[self.alias].vendor == "postgresql"
        if options.get("polling_interval") is None:
            self.polling_interval = (
                LISTENING_POLLING_INTERVAL_S if self.listens else DEFAULT_POLLING_INTERVAL_S
            )
        self.leases = LeaseKeeper(alias=self.alias, visibility_timeout_s=self.visibility_timeout_s)
        self.listener = NotifyListener(alias=self.alias) if self.listens else None

    def driver_version(self) -> str:
        import django

        return django.get_version()

    def establish_connection(self) -> Any:
        # Fail here, inside kombu's connect-retry loop, rather than at the first publish.
        with database_errors(self.alias):
            connections[self.alias].ensure_connection()
        return super().establish_connection()

    def close_connection(self, connection: Any) -> None:
        try:
            super().close_connection(connection)  # closes channels: held messages go back
            try:
                with database_errors(self.alias):
                    self.leases.flush()  # acks settled on a channel closed earlier
            except DatabaseError:
                logger.warning(
                    "could not write acks on close; their messages will be delivered again "
                    "after visibility_timeout_s=%s",
                    self.visibility_timeout_s,
                    exc_info=True,
                )
        finally:
            self.leases.stop()
            if self.listener is not None:
                self.listener.close()

    def drain_events(  # type: ignore[override]  # kombu declares **kwargs, passes timeout
        self, connection: Any, timeout: float | None = None
    ) -> None:
        """Deliver one message, waiting on NOTIFY (PostgreSQL) or polling while queues are idle."""
        deadline = None if timeout is None else monotonic() + timeout
        cycle = self.cycle
        assert cycle is not None  # built by virtual.Transport.__init__
        while True:
            self.leases.flush(older_than_s=ACK_FLUSH_S)
            queues = self._consumed_queues()
            if self.listener is not None:
                self.listener.listen(queues)
            try:
                cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                pass
            self.leases.flush()  # going idle: nothing to batch the pending acks with
            wait_s = self._idle_wait_s(queues, deadline)
            if wait_s is None:
                raise TimeoutError()  # socket.timeout, which kombu expects
            if self.listener is not None:
                self.listener.wait(wait_s)
            else:
                sleep(wait_s)

    def _idle_wait_s(self, queues: list[str], deadline: float | None) -> float | None:
        """How long to wait before polling again; None once ``deadline`` has passed."""
        wait_s = float(self.polling_interval or 0)
        if deadline is not None:
            remaining = deadline - monotonic()
            if remaining <= 0:
                return None
            wait_s = min(wait_s, remaining)
        if queues:
            # An eta or an expired lease makes a message visible without any NOTIFY.
            next_due = self._next_due_in_s(queues)
            if next_due is not None:
                wait_s = min(wait_s, next_due)
        return wait_s

    def _next_due_in_s(self, queues: list[str]) -> float | None:
        """Seconds until the next invisible message of ``queues`` turns visible, if any.

        Only future rows count: due rows left unclaimed (prefetch full) must not make the
        consumer spin.
        """
        now = timezone.now()
        with database_errors(self.alias):
            due = (
                QueueMessage.objects.using(self.alias)
                .filter(queue__in=queues, visible_at__gt=now)
                .aggregate(first=Min("visible_at"))["first"]
            )
        return None if due is None else max(0.0, (due - now).total_seconds())

    def _consumed_queues(self) -> list[str]:
        seen: dict[str, None] = {}
        for channel in self.channels:
            seen.update(dict.fromkeys(channel._active_queues))
        return list(seen)
