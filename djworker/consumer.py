"""The consumer: the only code that touches the worker's broker connection.

receive -> validate -> hold until due (countdown/ETA) -> hand to the pool -> acknowledge on the
outcome. Pools report outcomes on a thread-safe queue that the consumer drains on its own
thread, so kombu objects never cross threads. Prefetch follows the pool size. Connecting,
consuming, pausing and the queue list are ``ConsumerConnection``'s (``consumer_connection.py``).
"""

from __future__ import annotations

import contextlib
import itertools
import queue
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime
from time import monotonic
from typing import Any

from django.utils import timezone
from kombu.message import Message

from djworker import delivery_cap, message, result_store
from djworker.broker import Broker, probe
from djworker.calls import RunningCalls
from djworker.concurrency.base import BasePool
from djworker.conf import WorkerSettings
from djworker.consumer_connection import ConsumerConnection
from djworker.delivery import Delivery, refuse
from djworker.exceptions import InvalidMessage, TaskExpired, UnknownTask
from djworker.held import HeldMessages
from djworker.job import Job, Limits, Outcome, OutcomeKind, soft_limit_below_hard
from djworker.log_safety import get_logger
from djworker.message import Envelope
from djworker.stalls import StallWatch
from djworker.task_definition import Task, get_task
from djworker.task_lookup import task_for_message
from djworker.unenforced_limits import UnenforcedLimits

logger = get_logger(__name__)

#: the largest prefetch count every transport takes (AMQP's ``basic.qos`` field is 16 bits)
MAX_PREFETCH_COUNT = 65535

#: how long one loop iteration may wait for the broker when nothing is in flight
IDLE_WAIT_S = 1.0
#: how long it waits for the broker while tasks run, so their outcomes are acked promptly
BUSY_WAIT_S = 0.01
#: how often a consumer with a full prefetch window checks that its connection is alive
PROBE_EVERY_S = 0.2


class Consumer(ConsumerConnection):
    """Receives messages for the worker's queues and feeds the pool."""

    def __init__(
        self,
        *,
        broker: Broker,
        settings: WorkerSettings,
        pool: BasePool,
        clock: Callable[[], datetime] = timezone.now,
    ) -> None:
        super().__init__(broker=broker, queues=settings.queues, paused=settings.paused)
        #: the time ETAs and expiry are compared with (tests pass a clock they move by hand)
        self.clock = clock
        self.settings = settings
        self.pool = pool
        self.outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        # Requests from the control thread, run here because only this thread may touch kombu.
        self.actions: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._deliveries: dict[int, Delivery] = {}
        self._held = HeldMessages()
        self._calls = RunningCalls()
        self.stalls = StallWatch(self)
        self._unenforced = UnenforcedLimits()
        self._tokens = itertools.count(1)
        self._prefetch = -1
        #: warm shutdown under way: nothing new is handed to the pool
        self.stopping = False
        self._probed_at = 0.0
        self.processed = 0
        self.failed = 0

    # -- connection loss --------------------------------------------------------------------------

    def connection_lost(self) -> None:
        """Drop what the lost connection delivered and no slot has started.

        The broker delivers those messages again (at once on RabbitMQ and ``django://``'s
        close, after the visibility timeout on Redis), so they must not start here as well:
        messages held for an ETA, waiting in the pool's queue, or parked behind a run of the
        same call are dropped without an ack. Tasks already running finish; their outcome is
        recorded but not acknowledged (``Delivery.orphaned``). A message acknowledged when it
        was handed to the pool (``acks_late=False``) is no longer the broker's: it still runs.
        Called as soon as the loss is noticed, before any pause, so that no slot takes one
        of these jobs in between.
        """
        unacked = [
            token
            for token, delivery in self._deliveries.items()
            if not delivery.orphaned and not delivery.acked
        ]
        for delivery in self._deliveries.values():
            delivery.orphaned = True
        dropped = [job.token for job in self.pool.withdraw(unacked)]
        dropped.extend(self._held.take_all())
        dropped.extend(self._calls.unpark_all())
        ids = []
        for token in dropped:
            gone = self._deliveries.pop(token, None)
            if gone is None:
                continue
            ids.append(gone.envelope["id"])
            self._calls.finish(gone.call, token)
        if ids:
            logger.warning(
                "dropped %d received message(s) not started when the broker connection was "
                "lost; the broker delivers them again: ids=%s",
                len(ids),
                ",".join(ids),
            )

    def reconnect(self, should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Start over on a new connection after the old one was lost (see ``connection_lost``)."""
        self.connection_lost()
        self._kombu_consumer = None
        self._prefetch = -1
        self.consuming = False
        self.close()
        return self.connect(should_stop, at_start=False)

    def set_paused(self, paused: bool) -> None:
        """Stop (or start again) taking new messages; running tasks carry on."""
        self.hold = paused
        if paused:
            self.pause()
        else:
            self.resume()

    def call_soon(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` on the consumer's thread at its next iteration; safe from any thread."""
        future: Future[Any] = Future()
        self.actions.put((fn, future))
        return future

    def run_actions(self) -> None:
        while True:
            try:
                fn, future = self.actions.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except Exception as exc:
                logger.exception("control action %r failed", fn)
                future.set_exception(exc)

    @property
    def prefetch_target(self) -> int:
        """Messages to reserve for running (0 = no limit): pool size x prefetch multiplier.

        It follows the pool as autoscale resizes it. While the pool may still grow, it is at
        least one message more than the slots, so a backlog shows as waiting work even with a
        multiplier of 1.
        """
        multiplier = self.settings.prefetch_multiplier
        if multiplier == 0:
            return 0
        size = self.pool.size
        target = size * multiplier
        if self.settings.autoscale and size < self.settings.autoscale[1]:
            target = max(target, size + 1)
        return target

    def update_prefetch(self) -> None:
        """Prefetch = the target above, plus the messages held for a later ETA.

        Capped at ``MAX_PREFETCH_COUNT``: AMQP carries the count in 16 bits, and a larger one
        (a big multiplier times a big pool) made the worker fail at start on RabbitMQ.
        """
        target = self.prefetch_target
        count = 0 if target == 0 else min(target + len(self._held), MAX_PREFETCH_COUNT)
        if count != self._prefetch and self._kombu_consumer is not None:
            self._kombu_consumer.qos(prefetch_count=count)
            self._prefetch = count

    # -- one iteration ------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._deliveries) - len(self._held)

    def _saturated(self) -> bool:
        return self._prefetch > 0 and self.in_flight >= self.prefetch_target

    def loop_once(self) -> None:
        """Acknowledge finished work, release due messages, then wait briefly for more."""
        self.run_actions()
        self.drain_outcomes()
        self._release_due()
        self.stalls.check()
        if not self.consuming or self._saturated():
            # No new message can arrive; wake as soon as a running task finishes.
            self.drain_outcomes(block_s=BUSY_WAIT_S * 10 if self.in_flight else IDLE_WAIT_S)
            if self.consuming and self.in_flight:
                self._probe_if_due()
            return
        timeout = BUSY_WAIT_S if self.in_flight else IDLE_WAIT_S
        next_due = self._held.next_due()
        if next_due is not None:
            timeout = max(0.0, min(timeout, (next_due - self.clock()).total_seconds()))
        assert self.connection is not None
        with contextlib.suppress(TimeoutError):  # socket.timeout is TimeoutError
            self.connection.drain_events(timeout=timeout)

    def _probe_if_due(self) -> None:
        """Check the connection now and then while the broker is not being read.

        A full prefetch window means no broker call for as long as tasks run; a connection
        lost meanwhile would go unnoticed while freed slots start queued messages that the
        broker delivers again. One round trip every ``PROBE_EVERY_S`` bounds that window.
        """
        now = monotonic()
        if now - self._probed_at < PROBE_EVERY_S:
            return
        self._probed_at = now
        assert self.connection is not None
        probe(self.connection)

    def drain_outcomes(self, block_s: float = 0.0) -> int:
        """Acknowledge (or requeue, or retry) every reported outcome; returns how many."""
        handled = 0
        while True:
            try:
                outcome = (
                    self.outcomes.get(timeout=block_s) if block_s else self.outcomes.get_nowait()
                )
            except queue.Empty:
                return handled
            block_s = 0.0
            self._settle(outcome)
            handled += 1

    def _settle(self, outcome: Outcome) -> None:
        delivery = self._deliveries.pop(outcome.token, None)
        if delivery is None:
            logger.warning("id=%s outcome for an unknown delivery; ignored", outcome.task_id)
            return
        waiting = self._calls.finish(delivery.call, outcome.token)
        self.processed += 1
        if outcome.kind in (OutcomeKind.FAILED, OutcomeKind.LOST) and not outcome.requeue:
            self.failed += 1
        try:
            delivery.answer(outcome, self.broker)
        except BaseException:
            # The connection is likely gone: its redeliveries stay parked, to be dropped with
            # it (``connection_lost``) rather than answered on it.
            self._calls.park(outcome.token, waiting)
            raise
        self._release_parked(waiting, delivery, outcome)

    def _release_parked(self, waiting: list[int], first: Delivery, outcome: Outcome) -> None:
        """Settle the redeliveries that waited for the run of ``first``.

        Settled on a live connection (acknowledged, handed back, or its retry published), or
        finished for good, the call needs no further run: its redeliveries are acknowledged.
        Otherwise (its connection was lost before a retry or a hand-back went out) the first
        redelivery runs now, and any others wait for it in turn.
        """
        if not waiting:
            return
        finished = outcome.kind in (OutcomeKind.SUCCEEDED, OutcomeKind.FAILED) and not (
            outcome.requeue
        )
        if finished or not first.orphaned or first.acked:
            for position, redelivery in enumerate(waiting):
                delivery = self._deliveries[redelivery]
                try:
                    delivery.message.ack()
                except BaseException:
                    self._calls.park(redelivery, waiting[position:])  # as in _settle
                    raise
                del self._deliveries[redelivery]
                logger.info(
                    "task=%s id=%s was delivered again while it ran here; acknowledged "
                    "without a second run",
                    delivery.envelope["task"],
                    delivery.envelope["id"],
                )
            return
        if self.stopping:
            for redelivery in waiting:
                self._deliveries.pop(redelivery).give_back(self.broker)
            return
        rerun, *rest = waiting
        self._calls.park(rerun, rest)
        delivery = self._deliveries[rerun]
        self._dispatch(rerun, get_task(delivery.envelope["task"]))

    # -- receiving ----------------------------------------------------------------------------

    def _on_message(self, body: Any, msg: Message) -> None:
        try:
            self._receive(body, msg)
        except self.recoverable_errors:
            raise  # the connection is gone: the broker delivers the message again
        except Exception as exc:
            # A bug or a message nobody foresaw must not stop the worker, nor come back forever.
            logger.exception("rejected a message that could not be handled")
            self._forget(msg)
            if not msg.acknowledged:
                refuse(body, msg, exc)

    def _forget(self, msg: Message) -> None:
        """Stop answering for ``msg``: it is settled here, not by an outcome."""
        tokens = {token for token, delivery in self._deliveries.items() if delivery.message is msg}
        for token in tokens:
            del self._deliveries[token]
        self._held.discard(tokens)

    def _receive(self, body: Any, msg: Message) -> None:
        try:
            envelope = message.validate(body)
            task = task_for_message(envelope)
        except (InvalidMessage, UnknownTask) as exc:
            refuse(body, msg, exc)
            return
        if self.hold:
            # Received just before a pause took effect: back to the queue, untouched.
            msg.requeue()
            return
        token = next(self._tokens)
        self._deliveries[token] = Delivery(envelope, msg)
        eta = message.parse_time(envelope.get("eta"), "eta")
        if eta is not None and eta > self.clock():
            self._held.hold(eta, token)
            self.update_prefetch()
            return
        self._dispatch(token, task)

    def _release_due(self) -> None:
        if self.hold:
            return
        released = False
        now = self.clock()
        for token in self._held.pop_due(now):
            released = True
            delivery = self._deliveries[token]
            self._dispatch(token, get_task(delivery.envelope["task"]))
        if released:
            self.update_prefetch()

    def _dispatch(self, token: int, task: Task[Any, Any]) -> None:
        delivery = self._deliveries[token]
        envelope = delivery.envelope
        expires = message.parse_time(envelope.get("expires"), "expires")
        if expires is not None and expires <= self.clock():
            reason = f"expired at {expires.isoformat()} before it could run"
            logger.warning("task=%s id=%s state=FAILED %s", task.name, envelope["id"], reason)
            result_store.record_refused(
                envelope, reason=reason, exception_class=TaskExpired.__name__
            )  # logged, never raised, if it cannot be written
            del self._deliveries[token]
            delivery.message.ack()
            return
        if self._calls.claim(delivery.call, token) is not None:
            # A redelivery (a visibility timeout ran out, or the connection was replaced) of
            # a call this worker still runs: it waits for that run's outcome.
            logger.warning(
                "task=%s id=%s delivered again while it still runs here; it waits for that "
                "run instead of running beside it",
                task.name,
                envelope["id"],
            )
            return
        if not task.acks_late:
            delivery.message.ack()
            delivery.acked = True
        self._unenforced.check(self.pool, envelope)
        cap, cap_from = delivery_cap.cap_for(task, self.settings)
        self.pool.apply_async(
            Job(
                token,
                envelope,
                limits=self.limits_for(task, envelope),
                hostname=self.settings.hostname,
                max_deliveries=cap,
                max_deliveries_from=cap_from,
                redelivered=bool(delivery.message.delivery_info.get("redelivered")),
            )
        )

    def limits_for(self, task: Task[Any, Any], envelope: Envelope) -> Limits:
        """The call's limits, else the task's, else the worker's."""
        hard = envelope.get("time_limit") or task.time_limit or self.settings.time_limit_s
        soft = (
            envelope.get("soft_time_limit")
            or task.soft_time_limit
            or self.settings.soft_time_limit_s
        )
        if not soft_limit_below_hard(soft_s=soft, hard_s=hard):
            soft = None  # the hard limit comes first; a later soft limit could never fire
        return Limits(soft_s=soft, hard_s=hard)

    # -- shutdown -----------------------------------------------------------------------------

    def give_back_unstarted(self, jobs: list[Job]) -> None:
        """Hand back jobs a stopping pool never started, and messages held for an ETA.

        Redeliveries parked behind a running call wait for its outcome, and are then
        acknowledged or handed back, never started.
        """
        self.stopping = True
        for job in jobs:
            delivery = self._deliveries.pop(job.token, None)
            if delivery is not None:
                # The call no longer runs here: after a pool restart this consumer goes on, and
                # the broker's redelivery of this message must run, not wait for a run that
                # will never report.
                for parked in self._calls.finish(delivery.call, job.token):
                    self._deliveries.pop(parked).give_back(self.broker)
                delivery.give_back(self.broker)
        for token in self._held.take_all():
            delivery = self._deliveries.pop(token, None)
            if delivery is not None:
                delivery.give_back(self.broker)
        if jobs:
            logger.info("handed %d unstarted task(s) back to the broker", len(jobs))

    def wait_idle(self, *, should_stop: Callable[[], bool]) -> bool:
        """Settle outcomes until every running task has reported; False if told to stop first."""
        while self._deliveries:
            if should_stop():
                return False
            self.run_actions()  # control commands still get their answer while we wait
            self.drain_outcomes(block_s=0.1)
        self.run_actions()
        return True
