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
from time import monotonic, sleep, time
from typing import Any

from django.db import DatabaseError, InterfaceError, InternalError, OperationalError, connections
from django.utils import timezone
from kombu.transport import virtual

from djworker.log_safety import get_logger
from djworker.transport.channel import Channel
from djworker.transport.database import database_errors
from djworker.transport.leases import ACK_FLUSH_S, LeaseKeeper
from djworker.transport.listener import NotifyListener, Wake
from djworker.transport.operations import operations_for

__all__ = ["Channel", "Transport"]

logger = get_logger(__name__)

DEFAULT_VISIBILITY_TIMEOUT_S = 3600.0
# How much older than the last claim that emptied a queue a message may be stamped and still
# be found by the next claims rather than by the next poll: covers a publisher's commit.
CLAIM_WINDOW_MARGIN_S = 1.0


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
        self.ops = operations_for(self.alias)
        if options.get("polling_interval") is None:
            self.polling_interval = self.ops.default_polling_interval_s
        self.leases = LeaseKeeper(ops=self.ops, visibility_timeout_s=self.visibility_timeout_s)
        self.listener = NotifyListener(alias=self.alias) if self.ops.listens else None
        self._quiet: set[str] = set()  # queues found empty since their last NOTIFY
        self._drained_at: dict[str, float] = {}  # queue -> monotonic time a claim emptied it
        self._next_poll_at = 0.0  # monotonic time of the next poll of every queue
        self._next_due_at: float | None = None  # monotonic time the next countdown is due

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
        """Deliver one message, waiting on NOTIFY (PostgreSQL) or polling while queues are idle.

        Where the listener listens, a queue a claim found empty is not claimed from again until
        a NOTIFY names it, its next countdown message is due, or the next poll (every
        ``polling_interval``) comes: an idle consumer sends no query per wake-up, and one woken
        by NOTIFY claims at once.
        """
        deadline = None if timeout is None else monotonic() + timeout
        cycle = self.cycle
        assert cycle is not None  # built by virtual.Transport.__init__
        while True:
            self.leases.flush(older_than_s=ACK_FLUSH_S)
            queues = self._consumed_queues()
            if self.listener is not None:
                self.listener.listen(queues)
            self._poll_if_due(queues)
            try:
                cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                pass
            self.leases.flush()  # going idle: nothing to batch the pending acks with
            wait_s = self._idle_wait_s(deadline)
            if wait_s is None:
                raise TimeoutError()  # socket.timeout, which kombu expects
            if self.listener is not None:
                self._heard(self.listener.wait(wait_s))
            else:
                sleep(wait_s)

    # -- which queues to claim from ---------------------------------------------------------------

    def is_quiet(self, queue: str) -> bool:
        """True if ``queue`` needs no claim: found empty, and nothing announced since."""
        return queue in self._quiet

    def found_empty(self, queue: str) -> None:
        """A claim took every message of ``queue`` it could see.

        While listening, the queue is not claimed from again until a NOTIFY names it; and the
        next claims look only at messages due since (see ``claim_window_s``).
        """
        self._drained_at[queue] = monotonic()
        if self.listener is not None and self.listener.listening:
            self._quiet.add(queue)

    def claim_window_s(self, queue: str) -> float | None:
        """How far back a claim of ``queue`` must look for due messages; None: all the way.

        Nothing due before the last claim that emptied the queue can still wait, except a
        message stamped more than ``CLAIM_WINDOW_MARGIN_S`` before it became visible (published
        inside a long transaction, given back by a worker whose clock is behind): the poll
        every ``polling_interval`` looks all the way back and finds those.
        """
        drained_at = self._drained_at.get(queue)
        if drained_at is None:
            return None
        return monotonic() - drained_at + CLAIM_WINDOW_MARGIN_S

    def _heard(self, wake: Wake) -> None:
        if wake.blind:
            self._quiet.clear()
            return
        self._quiet -= wake.ready
        if wake.next_due_epoch_s is not None:
            due_at = monotonic() + max(0.0, wake.next_due_epoch_s - time())
            if self._next_due_at is None or due_at < self._next_due_at:
                self._next_due_at = due_at

    def _poll_if_due(self, queues: list[str]) -> None:
        """Every ``polling_interval`` (and when a countdown falls due), look at every queue.

        Claims from every queue again, gives back messages whose lease ran out (a dead
        worker's) and reads when the next countdown message is due: what no NOTIFY announces.
        """
        now_s = monotonic()
        countdown_due = self._next_due_at is not None and now_s >= self._next_due_at
        if now_s < self._next_poll_at and not countdown_due:
            return
        self._quiet.clear()
        self._drained_at.clear()
        self._next_poll_at = now_s + float(self.polling_interval or 0)
        self._next_due_at = None
        if not queues:
            return
        now = timezone.now()
        with database_errors(self.alias):
            for queue in queues:
                self.ops.release_expired(queue, now=now)
            due = self.ops.next_due(queues, now=now)
        if due is not None:
            self._next_due_at = now_s + max(0.0, (due - now).total_seconds())

    def _idle_wait_s(self, deadline: float | None) -> float | None:
        """How long to wait before polling again; None once ``deadline`` has passed."""
        now_s = monotonic()
        wake_at = self._next_poll_at
        if self._next_due_at is not None:
            wake_at = min(wake_at, self._next_due_at)
        if deadline is not None:
            if deadline <= now_s:
                return None
            wake_at = min(wake_at, deadline)
        return max(0.0, wake_at - now_s)

    def _consumed_queues(self) -> list[str]:
        seen: dict[str, None] = {}
        for channel in self.channels:
            seen.update(dict.fromkeys(channel._active_queues))
        return list(seen)
