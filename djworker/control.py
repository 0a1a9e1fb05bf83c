"""Live control of a running worker: profile reconcile, control commands, autoscale, heartbeat.

Runs on the worker's control thread (``ControlLoop``), which reads and writes the database.
Anything that touches kombu or the pool is handed to the consumer's thread with
``Consumer.call_soon`` and its outcome collected on a later tick, so a solo pool busy with a task
never stops this thread from answering.

What a profile change does:

* pool size, autoscale bounds: resize the pool in place (``grow``/``shrink``)
* queues: start or cancel consuming them
* prefetch multiplier, time limits, recycling limits, delivery cap: apply to the next tasks
* paused: stop (or start again) taking new messages
* pool kind: restart the pool gracefully (running tasks finish; unstarted ones go back)

Settings pinned by the environment or the command line are never changed by the profile.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import Future, wait
from typing import TYPE_CHECKING, Any

from django.db import connections, router
from django.utils import timezone

from djworker import bounds, conf
from djworker.autoscale import Autoscaler, Load
from djworker.broker import redact_url
from djworker.busy import retry_when_busy
from djworker.concurrency import GREEN_POOLS, resolve_pool
from djworker.exceptions import ConfigurationError
from djworker.expiry import ExpirySweeper
from djworker.heartbeat import Heartbeat
from djworker.log_safety import get_logger
from djworker.lost_workers import LostWorkerWatch, settle_previous_runs
from djworker.models import CommandAction, CommandStatus, ControlCommand, WorkerConfig
from djworker.stuck_results import StuckResultsWatch

if TYPE_CHECKING:
    from djworker.worker import Worker

logger = get_logger(__name__)


#: profiles listed by name when ``--config`` names one that does not exist
LISTED_PROFILES = 20


def profile_settings(name: str, *, create: bool = False) -> dict[str, Any]:
    """The admin layer for ``load_config``: the named profile's values.

    A missing profile is created only if asked (``--create-config``) or if it is the default
    one; otherwise a typo in ``--config`` would start a worker on a new, empty profile.
    """
    if create or name == conf.DEFAULT_PROFILE:
        profile, created = retry_when_busy(
            lambda: WorkerConfig.objects.get_or_create(name=name),
            alias=router.db_for_write(WorkerConfig),
            what=f"config={name} create",
        )
        if created:
            logger.info("config=%s created the pool settings profile with the defaults", name)
        return profile.as_settings()
    found = WorkerConfig.objects.filter(name=name).first()
    if found is None:
        names = list(WorkerConfig.objects.values_list("name", flat=True)[: LISTED_PROFILES + 1])
        more = ", ..." if len(names) > LISTED_PROFILES else ""
        listed = ", ".join(names[:LISTED_PROFILES]) + more
        raise ConfigurationError(
            f"--config: no pool settings profile named {name!r}; existing profiles: "
            f"{listed or 'none'}. Add --create-config to create it, or create it in the admin"
        )
    return found.as_settings()


def settings_table(config: conf.WorkerSettings) -> list[list[Any]]:
    """[field, value, layer] for every setting, JSON-able, for the ``Worker`` row and the admin."""
    rows: list[list[Any]] = []
    for field, value, layer in conf.explain(config):
        if field == "broker_url":
            value = redact_url(str(value))
        elif isinstance(value, tuple):
            value = list(value)
        rows.append([field, value, layer])
    rows.append(["paused", config.paused, config.sources.get("paused", conf.DEFAULT)])
    return rows


class ControlPlane:
    """The worker's side of the control plane: one instance per worker, ticked by ControlLoop."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.applied_revision = 0
        self.seen_revision = 0
        self.config_error = ""
        self._reconciling: Future[Any] | None = None
        self._commands: list[tuple[int, Future[Any]]] = []
        self.autoscaler = Autoscaler(read_load=self.load, resize=self._request_resize)
        self.autoscaler.configure(worker.config.autoscale, worker.config.autoscale_keepalive_s)
        self.heartbeat = Heartbeat(
            hostname=worker.config.hostname,
            interval_s=worker.config.heartbeat_interval_s,
            snapshot=self.snapshot,
        )

    # -- lifecycle (main thread) ---------------------------------------------------------------

    def start(self) -> None:
        """Register the worker row and hook into the control tick."""
        profile = WorkerConfig.objects.filter(name=self.worker.config.config_name).first()
        if profile is not None:
            self.applied_revision = self.seen_revision = profile.revision
        self.heartbeat.register(profile)
        left = settle_previous_runs(self.worker.config.hostname, started_before=timezone.now())
        if left.failed or left.waiting:
            logger.warning(
                "worker=%s settled the runs a previous process of this name left: failed=%d "
                "waiting_for_redelivery=%d",
                self.worker.config.hostname,
                left.failed,
                left.waiting,
            )
        stuck = StuckResultsWatch(self.worker.broker, lambda: list(self.worker.consumer.queues))
        config = self.worker.config
        expiry = ExpirySweeper(
            hostname=config.hostname,
            expires_s=config.result_expires_s,
            interval_s=config.result_cleanup_interval_s,
        )
        broker = self.worker.broker
        lost = LostWorkerWatch(
            hostname=config.hostname,
            lost_after_s=config.worker_lost_after_s,
            # RabbitMQ hands a dead connection's messages back at once; the others after this.
            visibility_timeout_s=0.0
            if broker.scheme.startswith(("amqp", "pyamqp"))
            else float(broker.transport_options.get("visibility_timeout", 3600)),
        )
        self.worker.control.hooks.extend(
            [
                self.poll_commands,
                self.reconcile,
                self.autoscale,
                self.heartbeat.beat,
                stuck,
                expiry,
                lost,
            ]
        )

    def stopped(self) -> None:
        self.heartbeat.stopped()

    def autoscale(self) -> None:
        if self.autoscaler.tick() is not None:
            self._settle_soon(self.autoscaler.pending)

    # -- what the row shows ----------------------------------------------------------------------

    def load(self) -> Load:
        consumer, pool = self.worker.consumer, self.worker.pool
        busy = pool.busy
        return Load(size=pool.size, busy=busy, waiting=max(0, consumer.in_flight - busy))

    def snapshot(self) -> dict[str, Any]:
        worker, config = self.worker, self.worker.config
        return {
            "pid": os.getpid(),
            "pool": worker.pool.describe(),
            "pool_size": worker.pool.size,
            "busy": worker.pool.busy,
            "processed": worker.consumer.processed,
            "failed": worker.consumer.failed,
            "queues": ",".join(worker.consumer.queues),
            "paused": worker.consumer.hold,
            "pinned": config.pinned,
            "settings": settings_table(config),
            "applied_revision": self.applied_revision,
            "config_error": self.config_error,
            "scale_events": list(self.autoscaler.recent),
        }

    # -- profile reconcile (control thread) -------------------------------------------------------

    def reconcile(self) -> None:
        """Apply a newly saved profile revision; pinned settings keep their values."""
        if self._reconciling is not None and not self._reconciling.done():
            return
        self._reconciling = None
        profile = WorkerConfig.objects.filter(name=self.worker.config.config_name).first()
        if profile is None or profile.revision == self.seen_revision:
            return
        self.seen_revision = profile.revision
        old = self.worker.config
        try:
            new = self.resolve(old, profile.as_settings())
        except ConfigurationError as exc:
            self.config_error = f"revision {profile.revision} not applied: {exc}"
            logger.error("config=%s %s", old.config_name, self.config_error)
            return
        revision = profile.revision
        self._reconciling = self.worker.consumer.call_soon(lambda: self.apply(new, revision))
        self._settle_soon(self._reconciling)

    def _settle_soon(self, future: Future[Any] | None) -> None:
        """Give the consumer thread one interval to act, so this tick's heartbeat shows it."""
        if future is not None:
            wait([future], timeout=self.worker.config.control_interval_s)

    def resolve(self, old: conf.WorkerSettings, admin: dict[str, Any]) -> conf.WorkerSettings:
        """The settings with this admin layer; refuses what cannot be applied while running."""
        cli = {f: getattr(old, f) for f, layer in old.sources.items() if layer == conf.CLI}
        new = conf.load_config(cli=cli, admin=admin, config_name=old.config_name)
        new = new.replace(hostname=old.hostname)
        same_kind = new.pool == old.pool
        pool_class = type(self.worker.pool) if same_kind else resolve_pool(new.pool)
        if new.autoscale and not pool_class.supports_autoscale:
            raise ConfigurationError(
                f"autoscale is not available with the {new.pool} pool; use one of "
                "threads, prefork, gevent or eventlet"
            )
        if (new.max_tasks_per_child or new.max_memory_per_child_kib) and not (
            pool_class.supports_recycling
        ):
            raise ConfigurationError(
                f"the {new.pool} pool does not recycle its slots; max_tasks_per_child and "
                "max_memory_per_child need the prefork pool"
            )
        pool_class.refuse_unenforced_time_limits(
            hard_s=new.time_limit_s,
            soft_s=new.soft_time_limit_s,
            where={
                "hard": conf.spelled(new, "time_limit_s"),
                "soft": conf.spelled(new, "soft_time_limit_s"),
            },
        )
        if pool_class.fixed_size and new.concurrency not in (None, pool_class.fixed_size):
            raise ConfigurationError(
                f"the {new.pool} pool has exactly {pool_class.fixed_size} slot(s); "
                f"concurrency {new.concurrency} is not possible"
            )
        return new

    def apply(self, new: conf.WorkerSettings, revision: int) -> str:
        """Consumer thread: switch to ``new`` settings, changing only what differs."""
        worker, consumer = self.worker, self.worker.consumer
        old = worker.config
        worker.config = consumer.config = new
        done: list[str] = []
        if new.pool != old.pool and (
            {new.pool, old.pool} & GREEN_POOLS or resolve_pool(new.pool).uses_processes
        ):
            self.restart_process(new.pool)
        if new.pool != old.pool:
            self.restart_pool()
            done.append(f"pool {old.pool}→{new.pool}")
        elif (new.concurrency, new.autoscale) != (old.concurrency, old.autoscale):
            before = worker.pool.size
            self.resize(self.target_size(new) - before)
            done.append(f"size {before}→{worker.pool.size}")
        worker.pool.max_tasks_per_child = new.max_tasks_per_child
        worker.pool.max_memory_per_child_kib = new.max_memory_per_child_kib
        for name in new.queues:
            consumer.add_queue(name)
        for name in [q for q in consumer.queues if q not in new.queues]:
            consumer.cancel_queue(name)
        if new.paused != old.paused:
            consumer.set_paused(new.paused)
        consumer.update_prefetch()
        self.autoscaler.configure(new.autoscale, new.autoscale_keepalive_s)
        self.applied_revision = revision
        self.config_error = ""
        summary = ", ".join(done) or "no pool change"
        logger.info("config=%s revision=%d applied: %s", new.config_name, revision, summary)
        return summary

    def target_size(self, config: conf.WorkerSettings) -> int:
        if config.autoscale:
            low, high = config.autoscale
            return min(max(self.worker.pool.size, low), high)
        return config.initial_pool_size(fixed_size=type(self.worker.pool).fixed_size)

    # -- pool operations (consumer thread) --------------------------------------------------------

    def resize(self, delta: int) -> int:
        pool = self.worker.pool
        if delta > 0:
            pool.grow(delta)
        elif delta < 0:
            pool.shrink(-delta)
        self.worker.consumer.update_prefetch()
        return pool.size

    def _request_resize(self, delta: int) -> Future[Any]:
        return self.worker.consumer.call_soon(lambda: self.resize(delta))

    def restart_pool(self) -> str:
        """Replace the pool gracefully: running tasks finish, unstarted ones go back.

        Never used to start a pool of processes: a change of pool kind to prefork, and a
        restart of a prefork pool, start the worker process again (``restart_process``).
        """
        worker, consumer = self.worker, self.worker.consumer
        old_pool = worker.pool
        consumer.pause()
        consumer.give_back_unstarted(old_pool.stop(graceful=True, timeout_s=0))
        consumer.wait_idle(should_stop=lambda: worker.cold_requested)
        old_pool.stop(graceful=True, timeout_s=10)
        worker.pool_class = resolve_pool(worker.config.pool)
        size = (
            self.target_size(worker.config)
            if worker.config.autoscale
            else worker.config.initial_pool_size(fixed_size=worker.pool_class.fixed_size)
        )
        worker.pool = consumer.pool = worker._make_pool(size)
        worker.pool.start()
        consumer.stopping = False  # drained for the restart, not for a shutdown: run again
        consumer.update_prefetch()
        if not consumer.hold:
            consumer.resume()
        logger.info(
            "worker=%s pool restarted: %s, %d slot(s)",
            worker.config.hostname,
            worker.pool.describe(),
            worker.pool.size,
        )
        return f"pool restarted: {worker.pool.describe()}, {worker.pool.size} slot(s)"

    def restart_process(self, pool: str) -> None:
        """Start the worker process again for a pool kind that needs its own process.

        A green pool patches the standard library when its process starts, and a patched
        process cannot go back. A pool of processes forks its fork server when the worker holds
        no database connection, which is only so before the worker's other threads start. So
        the pool is drained as in ``restart_pool`` (running tasks finish, unstarted ones go
        back), then the process replaces itself with
        ``python -m djworker runworker`` and the same arguments. It keeps its pid and hostname,
        and follows the profile (now naming ``pool``) from its first tick.
        """
        from djworker import green

        worker, consumer = self.worker, self.worker.consumer
        logger.info("worker=%s starting again for the %s pool", worker.config.hostname, pool)
        consumer.pause()
        consumer.give_back_unstarted(worker.pool.stop(graceful=True, timeout_s=0))
        consumer.wait_idle(should_stop=lambda: worker.cold_requested)
        worker.pool.stop(graceful=True, timeout_s=10)
        worker.control.stop()
        consumer.close()
        connections.close_all()
        green.exec_worker(sys.argv, patch_for=pool if pool in GREEN_POOLS else None)

    # -- control commands (control thread) -------------------------------------------------------

    def poll_commands(self) -> None:
        self._collect_outcomes()
        if self.heartbeat.row_id is None:
            return
        pending = ControlCommand.objects.filter(
            worker_id=self.heartbeat.row_id, status=CommandStatus.PENDING
        ).order_by("created_at", "pk")
        for command in pending:
            if not self._pick(command.pk):
                continue
            try:
                outcome = self.handle(command)
            except Exception as exc:
                self._finish(command.pk, CommandStatus.FAILED, str(exc))
                continue
            if isinstance(outcome, Future):
                self._commands.append((command.pk, outcome))
            else:
                self._finish(command.pk, CommandStatus.DONE, outcome)
        self._collect_outcomes()

    def _pick(self, pk: int) -> bool:
        """Mark a pending command RUNNING; False if another process picked it first."""
        picked = retry_when_busy(
            lambda: ControlCommand.objects.filter(pk=pk, status=CommandStatus.PENDING).update(
                status=CommandStatus.RUNNING, picked_at=timezone.now()
            ),
            alias=router.db_for_write(ControlCommand),
            what=f"control command={pk} pick",
        )
        return bool(picked)

    def handle(self, command: ControlCommand) -> str | Future[Any]:
        worker, consumer = self.worker, self.worker.consumer
        action, n = command.action, command.argument
        logger.info("worker=%s control command=%s n=%d", worker.config.hostname, action, n)
        if action == CommandAction.PAUSE:
            # The flag alone stops new work at once, even while a solo task blocks the consumer.
            consumer.hold = True
            consumer.call_soon(lambda: consumer.set_paused(True))
            return "paused: no new task will start; running tasks finish"
        if action == CommandAction.RESUME:
            return consumer.call_soon(self._resume)
        if action in (CommandAction.GROW, CommandAction.SHRINK):
            largest = worker.config.max_concurrency
            if not 1 <= n <= largest:
                raise ConfigurationError(
                    f"{action} needs N from 1 to {largest} ({bounds.SETTING}); got {n}"
                )
            if not worker.pool.supports_autoscale:
                raise ConfigurationError(
                    f"the {worker.pool.describe()} pool cannot change its size; "
                    "use threads, prefork, gevent or eventlet"
                )
            delta = n if action == CommandAction.GROW else -n
            return consumer.call_soon(lambda: self._resize_by(delta))
        if action == CommandAction.RESTART_POOL:
            if worker.pool.uses_processes:
                # A new fork server must be forked from a process that holds no database
                # connection: only a fresh worker process, before its threads start, is one.
                consumer.call_soon(lambda: self.restart_process(worker.config.pool))
                return (
                    "starting the worker process again for a fresh pool: running tasks "
                    "finish first, unstarted ones go back to the broker"
                )
            return consumer.call_soon(self.restart_pool)
        if action == CommandAction.TERMINATE:
            if not worker.pool.supports_terminate:
                raise ConfigurationError(
                    f"the {worker.pool.describe()} pool cannot terminate a running task; "
                    "prefork, gevent and eventlet can"
                )
            task_id = command.task_id
            return consumer.call_soon(lambda: self._terminate(task_id))
        if action == CommandAction.SHUTDOWN:
            worker.stop_requested = True
            return "warm shutdown started: running tasks finish, then the worker exits"
        raise ConfigurationError(
            f"unknown control action {action!r}; allowed: {', '.join(CommandAction.values)}"
        )

    def _terminate(self, task_id: str) -> str:
        if not self.worker.pool.terminate_job(task_id):
            raise LookupError(f"task {task_id!r} is not running here (it may have just finished)")
        return f"terminated task {task_id}; its result is recorded FAILED (Terminated)"

    def _resume(self) -> str:
        self.worker.consumer.set_paused(False)
        return "resumed"

    def _resize_by(self, delta: int) -> str:
        pool, scale = self.worker.pool, self.worker.config.autoscale
        before = pool.size
        target = max(1, before + delta)
        note = ""
        if scale:
            clamped = min(max(target, scale[0]), scale[1])
            if clamped != target:
                note = f" (autoscale keeps it within {scale[0]}..{scale[1]})"
            target = clamped
        largest = self.worker.config.max_concurrency
        if target > largest:
            note = f" (the maximum pool size is {largest}, {bounds.SETTING})"
            target = largest
        after = self.resize(target - before)
        verb = "grew" if delta > 0 else "shrank"
        if after == before:
            raise ConfigurationError(f"size stays {before}{note}")
        return f"{verb} {before}→{after}{note}"

    def _collect_outcomes(self) -> None:
        waiting: list[tuple[int, Future[Any]]] = []
        for pk, future in self._commands:
            if not future.done():
                waiting.append((pk, future))
            elif future.exception() is not None:
                self._finish(pk, CommandStatus.FAILED, str(future.exception()))
            else:
                self._finish(pk, CommandStatus.DONE, str(future.result()))
        self._commands = waiting

    def _finish(self, pk: int, status: str, message: str) -> None:
        retry_when_busy(
            lambda: ControlCommand.objects.filter(pk=pk).update(
                status=status, message=message, finished_at=timezone.now()
            ),
            alias=router.db_for_write(ControlCommand),
            what=f"control command={pk} finish",
        )
