"""``LeaseKeeper``: the claims a ``django://`` connection holds, from claim to settlement.

A claimed message is *held*: its lease is renewed every ``visibility_timeout / 3`` seconds. An
acked (or rejected) message is *settled*: no longer renewed, and waiting for its row to be
deleted in the next batch. Batching the deletes turns one transaction per ack into one per
``ACK_FLUSH_S`` (or per idle moment); a settled row keeps its lease until then, so no other
worker can take it in between.

Durability of a settlement: ``Channel.close`` and ``Transport.close_connection`` flush, so a
warm shutdown loses no ack. A crash (of the worker, or of PostgreSQL before the relaxed commit
reached disk) between an ack and its flush leaves the row leased: the message is delivered
again after the visibility timeout. That is the at-least-once contract the transport keeps
anyway, since a task can always finish just before its ack is written.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from time import monotonic

from django.db import DatabaseError, connections
from django.utils import timezone

from djworker import worker_connections
from djworker.busy import retry_when_busy
from djworker.log_safety import get_logger
from djworker.models.broker import QueueMessage
from djworker.transport.database import database_errors, redeliverable_transaction
from djworker.transport.operations import QueueOperations

logger = get_logger(__name__)

# Keeps IN (...) lists of renewals and deletes well under every database's parameter limit.
RENEW_BATCH = 500
# The consumer thread writes acks once the oldest has waited this long (or when it goes idle).
ACK_FLUSH_S = 0.05
# The keeper's own thread writes acks the consumer thread left waiting this long: a paused or
# saturated consumer does not call drain_events, and an unwritten ack must not wait for one
# (past the visibility timeout its message would be delivered again).
ACK_BACKSTOP_S = 2 * ACK_FLUSH_S
# The keeper thread keeps its database session this long after its last write, so a steady
# trickle of backstop flushes does not reconnect each time; renewals alone are minutes apart.
# While messages are held it keeps it longer (see ``LeaseKeeper._keeps_session``).
IDLE_SESSION_S = 1.0
# After a failed round the thread waits this long before touching the database again.
RETRY_AFTER_S = 1.0


class LeaseKeeper:
    """The leases one kombu connection holds or has settled, and the thread that tends them.

    Lives on the transport rather than a channel because kombu may settle a message on a
    different channel than the one that fetched it (``Transport._reject_inbound_message``).
    State is guarded by one lock (a condition, to wake the thread) because acks may come from
    any thread.
    """

    def __init__(self, *, ops: QueueOperations, visibility_timeout_s: float) -> None:
        self.ops = ops
        self.alias = ops.alias
        self.visibility_timeout_s = visibility_timeout_s
        self._held: dict[str, int] = {}  # lease -> row id
        self._settled: dict[str, int] = {}  # lease -> row id, to delete
        self._settled_since: float | None = None  # monotonic time of the oldest settled
        self._wake = threading.Condition(threading.Lock())
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def interval_s(self) -> float:
        return self.visibility_timeout_s / 3

    def hold(self, lease: str, message_id: int) -> None:
        with self._wake:
            self._held[lease] = message_id
            self._ensure_thread()

    def drop(self, lease: str) -> int | None:
        """Forget ``lease``; return its row id, or None if this connection does not hold it."""
        with self._wake:
            return self._held.pop(lease, None)

    def settle(self, lease: str) -> bool:
        """Stop renewing ``lease`` and delete its row with the next flush; False if not held."""
        with self._wake:
            message_id = self._held.pop(lease, None)
            if message_id is None:
                return False
            self._settled[lease] = message_id
            if self._settled_since is None:
                self._settled_since = monotonic()
                self._wake.notify()
            self._ensure_thread()
            return True

    def held(self) -> dict[str, int]:
        with self._wake:
            return dict(self._held)

    def settled_count(self) -> int:
        with self._wake:
            return len(self._settled)

    def flush(self, *, older_than_s: float = 0.0) -> int:
        """Delete the rows of settled leases, 500 a statement; return how many were deleted.

        With ``older_than_s``, only if the oldest settlement has waited that long: the caller
        polls this cheaply and the deletes still go out in batches.
        """
        with self._wake:
            since = self._settled_since
            if since is None or monotonic() - since < older_than_s:
                return 0
            settled, self._settled, self._settled_since = self._settled, {}, None
        leases = list(settled)
        deleted = 0
        done = 0
        try:
            with database_errors(self.alias):
                for done in range(0, len(leases), RENEW_BATCH):
                    batch = leases[done : done + RENEW_BATCH]
                    deleted += self.ops.delete_settled(
                        message_ids=[settled[lease] for lease in batch], leases=batch
                    )
                done = len(leases)
        except BaseException:
            with self._wake:  # a later flush retries the batches not written
                self._settled = {lease: settled[lease] for lease in leases[done:]} | self._settled
                if self._settled_since is None:
                    self._settled_since = since
            raise
        if deleted < len(leases):
            logger.warning(
                "settling found no message for missing=%d of settled=%d: their lease expired "
                "and another worker took them, or their queue was deleted",
                len(leases) - deleted,
                len(leases),
            )
        return deleted

    def renew(self) -> int:
        """One renewal round: push every held lease a full timeout ahead; return rows renewed."""
        held = self.held()
        until = timezone.now() + timedelta(seconds=self.visibility_timeout_s)
        leases = list(held)

        def renew_all() -> int:
            renewed = 0
            with redeliverable_transaction(self.alias):
                for start in range(0, len(leases), RENEW_BATCH):
                    batch = leases[start : start + RENEW_BATCH]
                    renewed += (
                        QueueMessage.objects.using(self.alias)
                        .filter(pk__in=[held[lease] for lease in batch], lease__in=batch)
                        .update(visible_at=until)
                    )
            return renewed

        with database_errors(self.alias):
            renewed = retry_when_busy(renew_all, alias=self.alias, what=f"renew held={len(leases)}")
        if renewed < len(leases):
            lost = self._lost(held)
            if lost:
                # Another worker took them after they expired (this process stalled longer
                # than the visibility timeout), or the queue was deleted: their ack will find
                # nothing.
                logger.warning(
                    "lease renewal lost=%d held=%d; those messages may run twice: message_ids=%s",
                    len(lost),
                    len(leases),
                    ",".join(str(message_id) for message_id in lost[:20]),
                )
        return renewed

    def _lost(self, renewing: dict[str, int]) -> list[int]:
        """Of the leases a renewal round did not find, the ones really lost (row ids).

        A message acked and deleted, or handed back, by the consumer thread between the
        round's snapshot and its UPDATE is not found either, and is no loss: only a lease this
        connection still holds and whose row no longer carries it is.
        """
        with self._wake:
            still = {lease: renewing[lease] for lease in renewing if lease in self._held}
        if not still:
            return []
        with database_errors(self.alias):
            found = set(
                QueueMessage.objects.using(self.alias)
                .filter(pk__in=list(still.values()), lease__in=list(still))
                .values_list("lease", flat=True)
            )
        return sorted(message_id for lease, message_id in still.items() if lease not in found)

    def stop(self) -> None:
        """Stop the thread; settled leases not flushed by then stay for the caller to flush."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        with self._wake:
            self._stopping = False

    def _ensure_thread(self) -> None:
        """Start the thread if needed; call with the lock held."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="djworker-lease-keeper", daemon=True
            )
            self._thread.start()

    def _next_wake_s(self, next_renewal: float, last_use: float | None, not_before: float) -> float:
        """Seconds until the thread has something to do; call with the lock held."""
        wake_at = next_renewal
        if self._settled_since is not None:
            wake_at = min(wake_at, self._settled_since + ACK_BACKSTOP_S)
        if last_use is not None:
            wake_at = min(wake_at, last_use + IDLE_SESSION_S)
        return max(0.0, wake_at - monotonic(), not_before - monotonic())

    def _keeps_session(self) -> bool:
        """Whether the thread keeps its session past ``IDLE_SESSION_S``: while messages are held.

        A consumer that runs tasks on its own thread (the solo pool) leaves the ack of one
        task to the backstop while it runs the next: closing after a second would open a
        session per task longer than that. Once nothing is held the session goes. Not for a
        pooled alias (a green pool's budget): the connection would be taken from the slots for
        as long as they run anything.
        """
        if worker_connections.pooled(self.alias):
            return False
        with self._wake:
            return bool(self._held)

    def _run(self) -> None:
        next_renewal = monotonic() + self.interval_s
        last_use: float | None = None  # when this thread last used its database session
        not_before = 0.0
        try:
            while True:
                with self._wake:
                    if self._stopping:
                        return
                    self._wake.wait(self._next_wake_s(next_renewal, last_use, not_before))
                    if self._stopping:
                        return
                now = monotonic()
                try:
                    if self.flush(older_than_s=ACK_BACKSTOP_S):
                        last_use = now
                    if now >= next_renewal:
                        next_renewal = now + self.interval_s
                        if self.held():
                            self.renew()
                            last_use = now
                except DatabaseError:
                    # Leases still have two thirds of their timeout left, and settled rows
                    # stay queued for the next flush: the next round retries both.
                    logger.warning(
                        "lease renewal or ack flush failed; retrying in retry_s=%s",
                        RETRY_AFTER_S,
                        exc_info=True,
                    )
                    last_use = now
                    not_before = now + RETRY_AFTER_S
                if last_use is None and connections[self.alias].connection is not None:
                    last_use = now  # a flush that found nothing to delete still opened it
                if last_use is not None and monotonic() - last_use >= IDLE_SESSION_S:
                    if self._keeps_session():
                        last_use = monotonic()  # looked at again a second later
                    else:
                        # Renewal rounds are minutes apart: an idle session would only occupy
                        # a server slot.
                        connections[self.alias].close()
                        last_use = None
        finally:
            connections[self.alias].close()
