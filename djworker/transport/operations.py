"""The SQL of the ``django://`` transport, chosen once per database vendor.

A ``QueueOperations`` object holds every statement the channel, the lease keeper and the idle
wait send to the queue table. ``operations_for(alias)`` picks the class for the connection's
vendor once, when the transport is built, the way Django picks a backend's ``ops_class``: the
rest of the transport never asks which database it runs on.

``QueueOperations`` is the portable version, written with the ORM: it serves SQLite (claiming
one message at a time with a conditional ``UPDATE``, since SQLite has no ``SKIP LOCKED``) and any
other database with ``SELECT ... FOR UPDATE SKIP LOCKED``. ``postgres.PostgresOperations``
replaces the hot statements with single round trips and wakes consumers with NOTIFY. Every
method takes and returns plain values; the caller wraps it in ``database_errors``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, NamedTuple

from django.db import connections, transaction
from django.db.models import CharField, F, Min, QuerySet, Value
from django.db.models.functions import Cast, Concat

from djworker.busy import retry_when_busy
from djworker.models.broker import QueueMessage
from djworker.transport.database import redeliverable_transaction

__all__ = ["Claim", "Outgoing", "QueueOperations", "operations_for"]

# Within one priority the message due longest goes first; id breaks ties. This is the order of
# djworker_qmsg_fetch_idx, so the claim reads the index instead of sorting the backlog.
FETCH_ORDER = ("-priority", "visible_at", "id")
# Rows the optimistic claim (databases without SKIP LOCKED) tries per round before re-reading.
CLAIM_CANDIDATES = 10
CLAIM_ROUNDS = 5


class Outgoing(NamedTuple):
    """A message to store, as ``insert`` takes it: the columns a publish sets.

    A plain tuple, not a ``QueueMessage``: building a model instance per message cost a bulk
    publish about as much as its insert.
    """

    queue: str
    priority: int
    payload: str
    #: when it may be delivered; not after ``created_at``: at once
    visible_at: datetime
    created_at: datetime


@dataclass(frozen=True)
class Claim:
    """A message a channel has leased; its lease is also its kombu delivery tag."""

    lease: str
    message_id: int
    payload: str
    deliveries: int


class QueueOperations:
    """The queue table's statements through the ORM: SQLite and other databases.

    Class attributes say what the vendor offers; subclasses override statements, never the
    meaning of one.
    """

    #: consumers can wait for a notification instead of polling (``listener``)
    listens: ClassVar[bool] = False
    #: seconds an idle consumer waits between polls when the option is not set
    default_polling_interval_s: ClassVar[float] = 0.1

    def __init__(self, alias: str) -> None:
        self.alias = alias

    @property
    def messages(self) -> QuerySet[QueueMessage]:
        return QueueMessage.objects.using(self.alias)

    # -- publishing ------------------------------------------------------------------------------

    def insert(self, rows: Sequence[Outgoing]) -> None:
        """Store ``rows`` in one transaction, durably (a lost insert is a lost message)."""

        def insert_all() -> None:
            with transaction.atomic(using=self.alias):
                self.messages.bulk_create(
                    [
                        QueueMessage(
                            queue=row.queue,
                            priority=row.priority,
                            payload=row.payload,
                            visible_at=row.visible_at,
                            created_at=row.created_at,
                        )
                        for row in rows
                    ]
                )

        queues = ",".join(sorted({row.queue for row in rows}))
        retry_when_busy(insert_all, alias=self.alias, what=f"publish queue={queues}")

    def notify(self, queue: str) -> None:
        """Wake consumers of ``queue``; call inside the transaction that made a message visible.

        Nothing to do where consumers poll.
        """

    # -- claiming --------------------------------------------------------------------------------

    def claim(
        self,
        queue: str,
        *,
        limit: int,
        now: datetime,
        until: datetime,
        window_s: float | None = None,
    ) -> list[Claim]:
        """Lease up to ``limit`` visible messages of ``queue`` until ``until``, in fetch order.

        ``window_s`` says no message due longer ago than that waits: a database with dead row
        versions may skip what lies before it. Here every row is looked at.
        """
        if connections[self.alias].features.has_select_for_update_skip_locked:
            return self._claim_locked(queue, limit=limit, now=now, until=until)
        return self._claim_guarded(queue, now=now, until=until)

    def _claim_locked(
        self, queue: str, *, limit: int, now: datetime, until: datetime
    ) -> list[Claim]:
        """Claim with ``SELECT ... FOR UPDATE SKIP LOCKED`` (MySQL 8, Oracle, ...).

        Concurrent workers skip each other's locked rows instead of queueing behind them. Every
        row of the batch gets a lease of its own (the batch's token plus its id), so each
        delivery has a distinct tag.
        """
        token = uuid.uuid4().hex + "."
        with redeliverable_transaction(self.alias):
            rows = list(
                self.messages.select_for_update(skip_locked=True)
                .filter(queue=queue, visible_at__lte=now)
                .order_by(*FETCH_ORDER)
                .values_list("pk", "payload", "deliveries")[:limit]
            )
            self.messages.filter(pk__in=[row[0] for row in rows]).update(
                lease=Concat(Value(token), Cast("pk", output_field=CharField())),
                visible_at=until,
                deliveries=F("deliveries") + 1,
            )
        return [Claim(token + str(pk), pk, payload, count + 1) for pk, payload, count in rows]

    def _claim_guarded(self, queue: str, *, now: datetime, until: datetime) -> list[Claim]:
        """Claim one message with a conditional UPDATE (SQLite, and others without SKIP LOCKED).

        SQLite runs each UPDATE under its single write lock and evaluates the WHERE clause
        inside it, so of two processes racing for a row exactly one sees it still visible and
        updates one row; the loser moves on to the next candidate. One at a time, whatever the
        limit: a batch would cost one such UPDATE per message anyway.
        """
        lease = uuid.uuid4().hex
        for _ in range(CLAIM_ROUNDS):
            candidates = list(
                self.messages.filter(queue=queue, visible_at__lte=now)
                .order_by(*FETCH_ORDER)
                .values_list("pk", "lease")[:CLAIM_CANDIDATES]
            )
            if not candidates:
                return []
            for message_id, old_lease in candidates:
                won = self.messages.filter(
                    pk=message_id, lease=old_lease, visible_at__lte=now
                ).update(lease=lease, visible_at=until, deliveries=F("deliveries") + 1)
                if won:
                    row = self.messages.filter(pk=message_id).values_list("payload", "deliveries")
                    found = row.first()
                    if found is None:
                        return []  # the queue was deleted in between
                    return [Claim(lease, message_id, found[0], found[1])]
        # Other workers won every candidate of every round: report empty and poll again.
        return []

    def release_expired(self, queue: str, *, now: datetime) -> int:
        """Make messages whose lease ran out claimable again; return how many.

        Nothing to do here: this class's claim takes them as they are.
        """
        return 0

    # -- settling and waiting --------------------------------------------------------------------

    def delete_settled(self, *, message_ids: Sequence[int], leases: Sequence[str]) -> int:
        """Delete the rows of settled leases still holding them; return how many went."""

        def delete() -> int:
            with redeliverable_transaction(self.alias):
                deleted, _ = self.messages.filter(pk__in=message_ids, lease__in=leases).delete()
            return deleted

        return retry_when_busy(delete, alias=self.alias, what=f"ack settled={len(leases)}")

    def next_due(self, queues: Sequence[str], *, now: datetime) -> datetime | None:
        """When the next message of ``queues`` not yet visible turns visible, if any.

        Only future rows count: due rows left unclaimed (prefetch full) must not make the
        consumer spin.
        """
        due: datetime | None = self.messages.filter(queue__in=queues, visible_at__gt=now).aggregate(
            first=Min("visible_at")
        )["first"]
        return due


#: vendor -> the class holding its statements; any other vendor gets ``QueueOperations``
VENDOR_OPERATIONS = {"postgresql": "djworker.transport.postgres:PostgresOperations"}


def operations_for(alias: str) -> QueueOperations:
    """The statements for the database behind ``alias``, chosen by its vendor."""
    from kombu.utils.imports import symbol_by_name

    path = VENDOR_OPERATIONS.get(connections[alias].vendor)
    cls: type[QueueOperations] = symbol_by_name(path) if path else QueueOperations
    return cls(alias)
