"""Live control of a running worker: profile reconcile, control commands, autoscale, heartbeat.

Runs on the worker's control thread (``ControlLoop``), which reads and writes the database.
It sees the worker through ``running_worker.RunningWorker`` and only translates: a profile
revision becomes ``apply_settings``, a command row runs its entry of the command table
(``control_commands``). Anything that touches kombu or the pool is handed to the consumer's
thread with ``call_soon`` and its outcome collected on a later tick, so a solo pool busy with a
task never stops this thread from answering.

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
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import Any

from django.db import router
from django.utils import timezone

from djworker import conf
from djworker.autoscale import Autoscaler, Load
from djworker.broker import redact_url
from djworker.busy import retry_when_busy
from djworker.concurrency.lookup import resolve_pool
from djworker.concurrency.settings_check import check_settings
from djworker.control_commands import control_action
from djworker.exceptions import ConfigurationError
from djworker.expiry import ExpirySweeper
from djworker.heartbeat import Heartbeat
from djworker.log_safety import get_logger
from djworker.lost_workers import LostWorkerWatch, settle_previous_runs
from djworker.models import CommandStatus, ControlCommand, WorkerProfile
from djworker.running_worker import RunningWorker
from djworker.stuck_results import StuckResultsWatch

logger = get_logger(__name__)


#: profiles listed by name when ``--profile`` names one that does not exist
LISTED_PROFILES = 20


def profile_settings(name: str, *, create: bool = False) -> dict[str, Any]:
    """The admin layer for ``load_config``: the named profile's values.

    A missing profile is created only if asked (``--create-profile``) or if it is the default
    one; otherwise a typo in ``--profile`` would start a worker on a new, empty profile.
    """
    if create or name == conf.DEFAULT_PROFILE:
        profile, created = retry_when_busy(
            lambda: WorkerProfile.objects.get_or_create(name=name),
            alias=router.db_for_write(WorkerProfile),
            what=f"profile={name} create",
        )
        if created:
            logger.info("profile=%s created the worker profile with the defaults", name)
        return profile.as_settings()
    found = WorkerProfile.objects.filter(name=name).first()
    if found is None:
        names = list(WorkerProfile.objects.values_list("name", flat=True)[: LISTED_PROFILES + 1])
        more = ", ..." if len(names) > LISTED_PROFILES else ""
        listed = ", ".join(names[:LISTED_PROFILES]) + more
        raise ConfigurationError(
            f"--profile: no worker profile named {name!r}; existing profiles: "
            f"{listed or 'none'}. Add --create-profile to create it, or create it in the admin"
        )
    return found.as_settings()


def settings_table(settings: conf.WorkerSettings) -> list[list[Any]]:
    """[field, value, layer] for every setting, JSON-able, for the ``Worker`` row and the admin."""
    rows: list[list[Any]] = []
    for field, value, layer in conf.explain(settings):
        if field == "broker_url":
            value = redact_url(str(value))
        elif isinstance(value, tuple):
            value = list(value)
        rows.append([field, value, layer])
    rows.append(["paused", settings.paused, settings.sources.get("paused", conf.DEFAULT)])
    return rows


class ControlPlane:
    """The worker's side of the control plane: one instance per worker, ticked by ControlLoop."""

    def __init__(self, worker: RunningWorker) -> None:
        self.worker = worker
        #: what the worker's control tick runs (filled by ``start``)
        self.hooks: list[Callable[[], None]] = []
        self.applied_revision = 0
        self.seen_revision = 0
        self.profile_error = ""
        self._reconciling: Future[Any] | None = None
        self._commands: list[tuple[int, Future[Any]]] = []
        self.autoscaler = Autoscaler(read_load=self.load, resize=self._request_resize)
        self.autoscaler.configure(worker.settings.autoscale, worker.settings.autoscale_keepalive_s)
        self.heartbeat = Heartbeat(
            hostname=worker.settings.hostname,
            interval_s=worker.settings.heartbeat_interval_s,
            snapshot=self.snapshot,
        )

    # -- lifecycle (main thread) ---------------------------------------------------------------

    def start(self) -> None:
        """Register the worker row and list the hooks of the control tick (``hooks``)."""
        profile = WorkerProfile.objects.filter(name=self.worker.settings.profile_name).first()
        if profile is not None:
            self.applied_revision = self.seen_revision = profile.revision
        self.heartbeat.register(profile)
        left = settle_previous_runs(self.worker.settings.hostname, started_before=timezone.now())
        if left.failed or left.waiting:
            logger.warning(
                "worker=%s settled the runs a previous process of this name left: failed=%d "
                "waiting_for_redelivery=%d",
                self.worker.settings.hostname,
                left.failed,
                left.waiting,
            )
        stuck = StuckResultsWatch(self.worker.broker, lambda: list(self.worker.consumer.queues))
        settings = self.worker.settings
        expiry = ExpirySweeper(
            hostname=settings.hostname,
            expires_s=settings.result_expires_s,
            interval_s=settings.result_cleanup_interval_s,
        )
        broker = self.worker.broker
        lost = LostWorkerWatch(
            hostname=settings.hostname,
            lost_after_s=settings.worker_lost_after_s,
            # RabbitMQ hands a dead connection's messages back at once; the others after this.
            visibility_timeout_s=0.0
            if broker.scheme.startswith(("amqp", "pyamqp"))
            else float(broker.transport_options.get("visibility_timeout", 3600)),
        )
        self.hooks = [
            self.poll_commands,
            self.reconcile,
            self.autoscale,
            self.heartbeat.beat,
            stuck,
            expiry,
            lost,
        ]

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
        worker, settings = self.worker, self.worker.settings
        return {
            "pid": os.getpid(),
            "pool": worker.pool.describe(),
            "pool_size": worker.pool.size,
            "busy": worker.pool.busy,
            "processed": worker.consumer.processed,
            "failed": worker.consumer.failed,
            "queues": ",".join(worker.consumer.queues),
            "paused": worker.consumer.hold,
            "pinned": settings.pinned,
            "settings": settings_table(settings),
            "applied_revision": self.applied_revision,
            "profile_error": self.profile_error,
            "scale_events": list(self.autoscaler.recent),
        }

    # -- profile reconcile (control thread) -------------------------------------------------------

    def reconcile(self) -> None:
        """Apply a newly saved profile revision; pinned settings keep their values."""
        if self._reconciling is not None and not self._reconciling.done():
            return
        self._reconciling = None
        profile = WorkerProfile.objects.filter(name=self.worker.settings.profile_name).first()
        if profile is None or profile.revision == self.seen_revision:
            return
        self.seen_revision = profile.revision
        old = self.worker.settings
        try:
            new = self.resolve(old, profile.as_settings())
        except ConfigurationError as exc:
            self.profile_error = f"revision {profile.revision} not applied: {exc}"
            logger.error("profile=%s %s", old.profile_name, self.profile_error)
            return
        revision = profile.revision
        self._reconciling = self.worker.call_soon(lambda: self.apply(new, revision))
        self._settle_soon(self._reconciling)

    def _settle_soon(self, future: Future[Any] | None) -> None:
        """Give the consumer thread one interval to act, so this tick's heartbeat shows it."""
        if future is not None:
            wait([future], timeout=self.worker.settings.control_interval_s)

    def resolve(self, old: conf.WorkerSettings, admin: dict[str, Any]) -> conf.WorkerSettings:
        """The settings with this admin layer; refuses what cannot be applied while running."""
        cli = {f: getattr(old, f) for f, layer in old.sources.items() if layer == conf.CLI}
        new = conf.load_config(cli=cli, admin=admin, profile_name=old.profile_name)
        new = new.replace(hostname=old.hostname)
        same_kind = new.pool == old.pool
        pool_class = type(self.worker.pool) if same_kind else resolve_pool(new.pool)
        check_settings(pool_class, new, spell=lambda field: conf.spelled(new, field))
        return new

    def apply(self, new: conf.WorkerSettings, revision: int) -> str:
        """Consumer thread: switch to ``new`` settings and record ``revision`` as applied."""
        done = self.worker.apply_settings(new)
        self.autoscaler.configure(new.autoscale, new.autoscale_keepalive_s)
        self.applied_revision = revision
        self.profile_error = ""
        summary = ", ".join(done) or "no pool change"
        logger.info("profile=%s revision=%d applied: %s", new.profile_name, revision, summary)
        return summary

    def _request_resize(self, delta: int) -> Future[Any]:
        return self.worker.call_soon(lambda: self.worker.resize(delta))

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
        """Run the command's entry of the command table; raising refuses the command."""
        logger.info(
            "worker=%s control command=%s n=%d",
            self.worker.settings.hostname,
            command.action,
            command.argument,
        )
        return control_action(command.action).run(self.worker, command)

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
