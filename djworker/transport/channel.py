"""The ``django://`` channel and QoS: kombu's queue operations as ``QueueMessage`` rows.

A consumer claims messages in batches: one transaction leases as many messages as its QoS
still has room for (its prefetch window), and the channel hands them to kombu one at a time.
Claimed but not yet delivered messages are leased like delivered ones (renewed, and visible
again at the visibility timeout if the worker dies) and go back to their queue at once when
their consumer is cancelled or the channel closes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from queue import Empty
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings
from django.db import DatabaseError
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from kombu.transport import virtual
from kombu.utils.json import dumps

from djworker.busy import retry_when_busy
from djworker.log_safety import get_logger
from djworker.message import out_of_range
from djworker.models.broker import QueueMessage
from djworker.transport import intake
from djworker.transport.database import database_errors, redeliverable_transaction
from djworker.transport.operations import Claim, Outgoing

if TYPE_CHECKING:
    from djworker.transport.leases import LeaseKeeper
    from djworker.transport.operations import QueueOperations

logger = get_logger(__name__)


class ChannelTransport(Protocol):
    """What a channel uses of the ``django://`` transport that opened it (``djworker.transport``).

    The transport's per-connection state: its database, its statements, the leases it renews
    and what it knows of each queue being empty.
    """

    alias: str
    ops: QueueOperations
    leases: LeaseKeeper
    visibility_timeout_s: float

    def is_quiet(self, queue: str) -> bool: ...
    def found_empty(self, queue: str) -> None: ...
    def claim_window_s(self, queue: str) -> float | None: ...


# The most messages one claim leases, whatever the prefetch window: bounds a claim
# transaction and the messages a consumer holds back from its peers at once.
CLAIM_BATCH_MAX = 100
MESSAGE_ID_KEY = "djworker_message_id"


def due_time(message: dict[str, Any], now: datetime) -> datetime:
    """When ``message`` may be delivered: its ``eta`` header (ISO-8601, UTC), else ``now``."""
    eta = (message.get("headers") or {}).get("eta")
    if not eta:
        return now
    try:
        due = eta if isinstance(eta, datetime) else datetime.fromisoformat(str(eta))
    except ValueError:
        logger.warning("message eta=%r is not an ISO-8601 timestamp; delivering it now", eta)
        return now
    if timezone.is_naive(due):
        due = due.replace(tzinfo=UTC)  # the publisher's contract: eta is UTC
    problem = out_of_range(due)
    if problem:
        # The row could not be stored, or read back; the consumer refuses it or runs it now.
        logger.warning("message eta=%r %s; delivering it now", eta, problem)
        return now
    return due if settings.USE_TZ else timezone.make_naive(due)


class QoS(virtual.QoS):
    """kombu's in-memory QoS plus the database side of settling a message.

    Ack deletes the row; reject without requeue deletes it too (nothing dead-letters here).
    Both are batched: the lease keeper deletes settled rows together (see ``leases``). Reject
    with requeue and ``restore_unacked`` go through ``Channel._restore``, which makes the row
    visible at once.
    """

    channel: Channel

    def ack(self, delivery_tag: str) -> None:
        self.channel.settle(delivery_tag)
        super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if not requeue:
            self.channel.settle(delivery_tag)
        super().reject(delivery_tag, requeue=requeue)


class Channel(virtual.Channel):
    """One kombu channel over the ``QueueMessage`` table.

    The delivery tag of a message is the lease of its claim, so a message delivered twice to
    the same channel (after its lease expired) still has two distinct tags.
    """

    QoS = QoS
    connection: ChannelTransport

    def __init__(self, connection: ChannelTransport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.alias = connection.alias
        self.ops = connection.ops
        self._no_ack_queues: set[str] = set()
        self._claimed: dict[str, deque[Claim]] = {}  # queue -> claimed, not yet delivered

    @property
    def _messages(self) -> QuerySet[QueueMessage]:
        return QueueMessage.objects.using(self.alias)

    def _row(self, queue: str, message: dict[str, Any], now: datetime) -> Outgoing:
        priority = self._get_message_priority(message)
        return Outgoing(queue, priority, dumps(message), due_time(message, now), now)

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        """Insert ``message``, durably: never through ``redeliverable_transaction``."""
        row = self._row(queue, message, timezone.now())
        with database_errors(self.alias):
            self.ops.insert([row])

    def publish_many(self, queue: str, messages: Sequence[dict[str, Any]]) -> None:
        """``basic_publish`` of ``messages`` (from ``prepare_message``) to ``queue``, at once.

        All or none, in one transaction: one multi-row ``INSERT`` (which also notifies) on
        PostgreSQL. Durable, like ``_put``.
        """
        for message in messages:
            self._inplace_augment_message(message, "", queue)  # base64 body, delivery tag
        now = timezone.now()
        rows = [self._row(queue, message, now) for message in messages]
        if not rows:
            return
        with database_errors(self.alias):
            self.ops.insert(rows)

    def _notify(self, queue: str) -> None:
        """Wake consumers of ``queue`` (where they listen).

        Call it inside the transaction that made the message visible: PostgreSQL delivers the
        notification on commit, so no consumer wakes before it can see the row.
        """
        self.ops.notify(queue)

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        """One message of ``queue`` for ``basic_get``: claimed alone, no prefetch to fill."""
        while True:
            message = self._deliverable(queue, self._next_claim(queue, limit=1))
            if message is not None:
                return message

    def _get_and_deliver(self, queue: str, callback: Callable[..., Any]) -> None:
        """One message of ``queue`` for a consumer, claiming a batch if none is buffered."""
        while True:
            if self.connection.is_quiet(queue) and queue not in self._claimed:
                raise Empty()  # found empty, and no NOTIFY since
            message = self._deliverable(queue, self._next_claim(queue, limit=self._claim_room()))
            if message is not None:
                callback(message, queue)
                return

    def _claim_room(self) -> int:
        """How many messages one claim may lease: the prefetch room not already claimed."""
        room = self.qos.can_consume_max_estimate()
        if not room:
            # No prefetch limit: claim one at a time rather than take the whole queue.
            return 1
        buffered = sum(len(claims) for claims in self._claimed.values())
        return min(room - buffered, CLAIM_BATCH_MAX)

    def _next_claim(self, queue: str, *, limit: int) -> Claim:
        buffered = self._claimed.get(queue)
        if not buffered:
            if limit <= 0:
                raise Empty()  # other queues' claims fill the prefetch window
            with database_errors(self.alias):
                claims = retry_when_busy(
                    lambda: self._claim(queue, limit), alias=self.alias, what=f"claim queue={queue}"
                )
            if len(claims) < limit:
                self.connection.found_empty(queue)
            if not claims:
                raise Empty()
            buffered = self._claimed.setdefault(queue, deque())
            buffered.extend(claims)
        claim = buffered.popleft()
        if not buffered:
            del self._claimed[queue]
        return claim

    def _deliverable(self, queue: str, claim: Claim) -> dict[str, Any] | None:
        """The claimed message as kombu takes it; None if it is not one (then it is removed).

        A row kombu cannot build a message from would raise at every delivery, and the claims
        of its batch would never be delivered: it is deleted instead, with its content logged.
        """
        message, problem = intake.parse(claim.payload)
        if message is None:
            logger.error(
                "removed message id=%s of queue=%s: %s; payload=%.200r",
                claim.message_id,
                queue,
                problem,
                claim.payload,
            )
            self.settle(claim.lease)
            return None
        properties = message["properties"]
        properties["delivery_tag"] = claim.lease
        properties.setdefault("delivery_info", {}).update(
            {MESSAGE_ID_KEY: claim.message_id, "redelivered": claim.deliveries > 1}
        )
        if queue in self._no_ack_queues:
            self.delete_claimed(claim.lease)  # no_ack: delivered at most once, like AMQP
        return message

    def _lease_until(self) -> datetime:
        return timezone.now() + timedelta(seconds=self.connection.visibility_timeout_s)

    def _claim(self, queue: str, limit: int) -> list[Claim]:
        """Lease up to ``limit`` messages of ``queue`` and hold their leases."""
        claims = self.ops.claim(
            queue,
            limit=limit,
            now=timezone.now(),
            until=self._lease_until(),
            window_s=self.connection.claim_window_s(queue),
        )
        for claim in claims:
            self.connection.leases.hold(claim.lease, claim.message_id)
        return claims

    def settle(self, lease: str) -> None:
        """Settle a claim for good (ack, or reject without requeue): deleted with the next flush."""
        self.connection.leases.settle(lease)

    def delete_claimed(self, lease: str) -> None:
        """Settle a claim for good now, durably: for no_ack, where the delete is the delivery."""
        message_id = self.connection.leases.drop(lease)
        if message_id is None:
            return
        with database_errors(self.alias):
            deleted, _ = retry_when_busy(
                self._messages.filter(pk=message_id, lease=lease).delete,
                alias=self.alias,
                what=f"settle message id={message_id}",
            )
        if not deleted:
            logger.warning(
                "settling found no message id=%s: its lease expired and another worker "
                "took it, or its queue was deleted",
                message_id,
            )

    def _restore(self, message: virtual.Message) -> None:
        lease = message.delivery_tag
        message_id = self.connection.leases.drop(lease)
        if message_id is None:
            return  # settled already; re-inserting would deliver it twice
        with database_errors(self.alias):
            retry_when_busy(
                lambda: self._make_visible(message_id, lease),
                alias=self.alias,
                what=f"give back message id={message_id}",
            )

    def _make_visible(self, message_id: int, lease: str) -> None:
        with redeliverable_transaction(self.alias):
            claimed = self._messages.filter(pk=message_id, lease=lease)
            queue = claimed.values_list("queue", flat=True).first()
            if queue is not None and claimed.update(lease="", visible_at=timezone.now()):
                self._notify(queue)

    def _requeue_claimed(self, queue: str | None = None) -> None:
        """Give back claimed, undelivered messages (of ``queue``, or all) at once.

        Their delivery count goes back down too: nobody saw them, so the next consumer must
        not take them for redeliveries.
        """
        queues = list(self._claimed) if queue is None else [queue]
        claims = [claim for name in queues for claim in self._claimed.pop(name, ())]
        leases = [claim.lease for claim in claims if self.connection.leases.drop(claim.lease)]
        if not leases:
            return
        ids = [claim.message_id for claim in claims]

        def requeue() -> None:
            with redeliverable_transaction(self.alias):
                requeued = self._messages.filter(pk__in=ids, lease__in=leases).update(
                    lease="", visible_at=timezone.now(), deliveries=F("deliveries") - 1
                )
                if requeued:
                    for name in queues:
                        self._notify(name)

        with database_errors(self.alias):
            retry_when_busy(requeue, alias=self.alias, what=f"give back claimed={len(leases)}")

    def close(self) -> None:
        """Write pending acks and give back claimed, undelivered messages, then close."""
        if not self.closed and self.connection is not None:
            try:
                self.connection.leases.flush()
                self._requeue_claimed()
            except DatabaseError:
                # The rows stay leased: their messages come back after the visibility timeout.
                logger.warning(
                    "could not write acks or give back claimed messages on close; they will "
                    "be delivered again after visibility_timeout_s=%s",
                    self.connection.visibility_timeout_s,
                    exc_info=True,
                )
        super().close()

    def _size(self, queue: str) -> int:
        """Messages ready now: neither waiting for their eta nor leased to a consumer."""
        with database_errors(self.alias):
            return int(self._messages.filter(queue=queue, visible_at__lte=timezone.now()).count())

    def _purge(self, queue: str) -> int:
        """Delete every message of ``queue`` that no consumer holds (ready or waiting for eta)."""
        with database_errors(self.alias):
            deleted, _ = (
                self._messages.filter(queue=queue)
                .filter(Q(lease="") | Q(visible_at__lte=timezone.now()))
                .delete()
            )
        return int(deleted)

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        with database_errors(self.alias):
            self._messages.filter(queue=queue).delete()

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._tag_to_queue.values():
            self._no_ack_queues.discard(queue)
            self._requeue_claimed(queue)  # nobody here will take them now
        return result

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self.delete_claimed(message.delivery_tag)
        return message
