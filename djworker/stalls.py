"""``StallWatch``: says when the worker holds received messages that no free slot runs.

A worker that has free slots and received messages waiting should start them within
milliseconds. If it does not (a job kept in a pool's queue while its slots idle, a job the pool
took and never reported, a transport whose prefetch window counts messages the consumer never
got), the user sees tasks that never finish and an idle worker. The watch turns that silence
into a warning that names the task ids and where they sit. It runs on the consumer's thread,
from its loop, at most once a second, and only reads what the consumer and pool already keep
(it is part of the consumer, in a module of its own, so it reads the consumer's bookkeeping,
described by ``WatchedConsumer`` so that this module does not import the consumer that runs it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from time import monotonic
from typing import TYPE_CHECKING, Any, Protocol

from djworker.log_safety import get_logger

if TYPE_CHECKING:
    import queue

    import kombu

    from djworker.calls import RunningCalls
    from djworker.concurrency.base import BasePool
    from djworker.delivery import Delivery
    from djworker.held import HeldMessages
    from djworker.job import Outcome

logger = get_logger(__name__)

#: how often the watch looks
CHECK_EVERY_S = 1.0
#: how long a message may wait with a slot free before the worker says so
WARN_AFTER_S = 5.0
#: most task ids one warning names
MAX_IDS = 20

IN_POOL_QUEUE = "in the pool's queue"
UNACCOUNTED = "handed to the pool, neither queued nor reported running"
TRANSPORT_FULL = "transport"


class WatchedConsumer(Protocol):
    """What the watch reads of ``djworker.consumer.Consumer``: the consumer's own bookkeeping."""

    @property
    def pool(self) -> BasePool: ...
    @property
    def hold(self) -> bool: ...
    @property
    def consuming(self) -> bool: ...
    @property
    def outcomes(self) -> queue.SimpleQueue[Outcome]: ...
    @property
    def _deliveries(self) -> dict[int, Delivery]: ...
    @property
    def _held(self) -> HeldMessages: ...
    @property
    def _calls(self) -> RunningCalls: ...
    @property
    def _kombu_consumer(self) -> kombu.Consumer | None: ...
    @property
    def _prefetch(self) -> int: ...
    def _saturated(self) -> bool: ...


class StallWatch:
    """Warns once per message that waits longer than ``WARN_AFTER_S`` while a slot is free."""

    def __init__(
        self, consumer: WatchedConsumer, *, clock: Callable[[], float] = monotonic
    ) -> None:
        self.consumer = consumer
        self.clock = clock
        self._next_check = 0.0
        self._since: dict[Any, float] = {}  # token (or TRANSPORT_FULL) -> first seen stuck
        self._warned: set[Any] = set()

    def check(self) -> None:
        """One look, if the last was at least ``CHECK_EVERY_S`` ago."""
        now = self.clock()
        if now < self._next_check:
            return
        self._next_check = now + CHECK_EVERY_S
        stuck = self.stuck()
        for key in list(self._since):
            if key not in stuck:
                del self._since[key]
                self._warned.discard(key)
        overdue: dict[str, list[str]] = defaultdict(list)
        for key, (where, task_id) in stuck.items():
            since = self._since.setdefault(key, now)
            if now - since >= WARN_AFTER_S and key not in self._warned:
                self._warned.add(key)
                overdue[where].append(task_id)
        for where, ids in overdue.items():
            if where == TRANSPORT_FULL:
                logger.warning("%s", ids[0])
                continue
            logger.warning(
                "holding %d received message(s) for more than %.0fs while slots are free "
                "(pool busy=%d size=%d): %s: ids=%s%s",
                len(ids),
                WARN_AFTER_S,
                self.consumer.pool.busy,
                self.consumer.pool.size,
                where,
                ",".join(ids[:MAX_IDS]),
                f" and {len(ids) - MAX_IDS} more" if len(ids) > MAX_IDS else "",
            )

    def stuck(self) -> dict[Any, tuple[str, str]]:
        """Messages that wait although a slot is free: key -> (where, task id or message)."""
        consumer = self.consumer
        pool = consumer.pool
        if consumer.hold or pool.busy >= pool.size:
            return {}
        stuck: dict[Any, tuple[str, str]] = {}
        queued = pool.queued()
        for job in queued:
            stuck[job.token] = (IN_POOL_QUEUE, job.task_id)
        queued_tokens = {job.token for job in queued}
        handed = [token for token in self._dispatched() if token not in queued_tokens]
        # Outcomes not drained yet are runs that ended a moment ago, not lost ones.
        if len(handed) > pool.busy + consumer.outcomes.qsize():
            for token in handed:
                stuck[token] = (UNACCOUNTED, str(consumer._deliveries[token].envelope["id"]))
        full = self._transport_window_full()
        if full:
            stuck[TRANSPORT_FULL] = (TRANSPORT_FULL, full)
        return stuck

    def _dispatched(self) -> list[int]:
        """Deliveries handed to the pool and not settled (neither held for an ETA nor parked)."""
        consumer = self.consumer
        waiting = consumer._held.tokens()
        waiting.update(consumer._calls.parked())
        return [token for token in consumer._deliveries if token not in waiting]

    def _transport_window_full(self) -> str:
        """Why nothing can be received though the consumer has room; "" if it can.

        A virtual transport (redis, ``django://``) counts unacknowledged messages against the
        prefetch window itself: one it counts that the consumer does not hold shrinks the
        window for good.
        """
        consumer = self.consumer
        kombu_consumer = consumer._kombu_consumer
        if consumer.hold or not consumer.consuming or consumer._saturated():
            return ""
        if kombu_consumer is None:
            return ""
        qos = getattr(kombu_consumer.channel, "qos", None)
        can_consume = getattr(qos, "can_consume", None)
        if can_consume is None or can_consume():
            return ""
        counted = len(getattr(qos, "_delivered", ())) - len(getattr(qos, "_dirty", ()))
        return (
            f"the transport counts unacked={counted} against prefetch={consumer._prefetch} "
            f"while the consumer holds {len(consumer._deliveries)}: no new message can be "
            "received"
        )
