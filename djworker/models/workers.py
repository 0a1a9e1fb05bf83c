"""The control plane's tables: worker profiles, running workers, control commands.

``WorkerProfile`` is what operators edit in the admin ("Worker profiles"); a worker started with
``runworker --profile NAME`` follows the profile of that name. ``Worker`` is one row per worker
process, kept current by its control thread. ``ControlCommand`` records every request made of a
worker and its outcome.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F
from django.utils import timezone

from djworker import bounds, conf
from djworker.concurrency.lookup import custom_pools, profile_pool_error
from djworker.concurrency.registry import builtin_class_of
from djworker.concurrency.settings_check import field_name, settings_problems
from djworker.exceptions import ConfigurationError
from djworker.option_values import parse_queues

#: fields that are a number of pool slots, each at most ``MAX_CONCURRENCY``
SIZE_FIELDS = ("concurrency", "autoscale_min", "autoscale_max")
#: the profile field each ``WorkerSettings`` field of a refused setting is shown on: its own,
#: but a refused autoscale is the pool's (two bounds, and the pool is what cannot resize)
PROFILE_FIELD_OF = {
    **{o.field: name for name, o in conf.OPTION_OF_PROFILE_FIELD.items()},
    "autoscale": "pool",
}
#: a worker whose last heartbeat is older than this many intervals is shown as stale
STALE_AFTER_INTERVALS = 3


class WorkerProfile(models.Model):
    """A worker profile: named pool settings that running workers follow live.

    A blank field means "not set here": the value comes from ``settings.DJWORKER`` or the code
    default. Environment variables and command-line options still win over the profile.

    Each field but ``name`` and ``paused`` is named by an entry of ``conf.OPTIONS``
    (``profile_fields``), which says the setting it sets and the admin section it is shown in;
    within a section the fields keep the order they are declared in here.
    """

    name = models.SlugField(max_length=100, unique=True, default="default")
    pool = models.CharField(
        max_length=200,
        blank=True,
        # No list of pools here: a help text is part of the migrations, and the admin's form
        # offers the registry's pools itself.
        help_text="A built-in pool, or a custom pool class listed in "
        "settings.DJWORKER['CUSTOM_POOLS']. "
        "Changing it restarts the pool gracefully (running tasks finish).",
    )
    concurrency = models.IntegerField(
        null=True, blank=True, help_text="Pool slots; with autoscale, only the starting size."
    )
    autoscale_min = models.IntegerField(null=True, blank=True)
    autoscale_max = models.IntegerField(
        null=True, blank=True, help_text="Set both bounds to let the pool follow demand."
    )
    autoscale_keepalive = models.FloatField(
        null=True,
        blank=True,
        help_text="Seconds without need before an autoscaled pool shrinks (default 30).",
    )
    queues = models.CharField(max_length=1000, blank=True, help_text="Comma-separated queue names.")
    prefetch_multiplier = models.IntegerField(
        null=True, blank=True, help_text="Messages reserved per slot; 0 means no limit."
    )
    time_limit = models.FloatField(null=True, blank=True, help_text="Hard limit, seconds.")
    soft_time_limit = models.FloatField(null=True, blank=True, help_text="Soft limit, seconds.")
    max_tasks_per_child = models.IntegerField(null=True, blank=True, help_text="prefork only")
    max_memory_per_child = models.IntegerField(null=True, blank=True, help_text="KiB; prefork only")
    max_deliveries = models.IntegerField(
        null=True,
        blank=True,
        help_text="Deliveries of one message that may start before it is failed (its process "
        "died each time); 0 means no cap. A task's own max_deliveries wins.",
    )
    paused = models.BooleanField(
        default=False, help_text="Stop taking new messages; running tasks finish."
    )
    revision = models.PositiveIntegerField(default=1, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "worker profile"
        verbose_name_plural = "worker profiles"
        ordering = ("name",)
        permissions = [("choose_custom_pool", "Can choose a custom pool class in a profile")]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        # Every save is a new revision, so workers can say which one they have applied.
        if self.pk is not None:
            self.revision = (
                WorkerProfile.objects.filter(pk=self.pk).values_list("revision", flat=True).first()
                or 0
            ) + 1
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        pool = self.pool.strip()
        try:
            allowed = custom_pools()
        except ConfigurationError as exc:
            allowed = ()
            errors["pool"] = str(exc)
        if pool and (error := profile_pool_error(pool, allowed=allowed)):
            errors["pool"] = error[0].upper() + error[1:] + "."
        largest = bounds.max_concurrency()
        for field in (
            "concurrency",
            "autoscale_min",
            "autoscale_max",
            "max_tasks_per_child",
            "max_memory_per_child",
        ):
            value = getattr(self, field)
            if value is not None and value < 1:
                errors[field] = f"Must be a positive whole number (1 or more); got {value}."
            elif field in SIZE_FIELDS and value is not None and value > largest:
                errors[field] = (
                    f"At most {largest}, the maximum pool size ({bounds.SETTING}); got {value}."
                )
        if self.queues.strip():
            try:
                parse_queues(self.queues, name="queues")
            except ConfigurationError as exc:
                errors["queues"] = str(exc)
        for field in ("autoscale_keepalive", "time_limit", "soft_time_limit"):
            value = getattr(self, field)
            if value is not None and value <= 0:
                errors[field] = f"Must be a positive number of seconds; got {value}."
        if self.max_deliveries is not None and self.max_deliveries < 0:
            errors["max_deliveries"] = f"Must be 0 (no cap) or more; got {self.max_deliveries}."
        if self.prefetch_multiplier is not None and self.prefetch_multiplier < 0:
            errors["prefetch_multiplier"] = (
                f"Must be 0 (no limit) or more; got {self.prefetch_multiplier}."
            )
        low, high = self.autoscale_min, self.autoscale_max
        if (low is None) != (high is None):
            errors["autoscale_max" if high is None else "autoscale_min"] = (
                "Set both autoscale bounds, or neither."
            )
        elif low is not None and high is not None and low > high and "autoscale_min" not in errors:
            errors["autoscale_min"] = (
                f"The minimum ({low}) must not be above the maximum ({high}); allowed: 1 to {high}."
            )
        pool_class = builtin_class_of(pool) if "pool" not in errors else None
        for problem in settings_problems(pool_class, self._checked_settings(), spell=field_name):
            field = PROFILE_FIELD_OF.get(problem.field, problem.field)
            errors.setdefault(field, problem.message[0].upper() + problem.message[1:] + ".")
        if errors:
            raise ValidationError(errors)

    def _checked_settings(self) -> dict[str, Any]:
        """The values ``check_settings`` reads, keyed by ``WorkerSettings`` field."""
        low, high = self.autoscale_min, self.autoscale_max
        return {
            "concurrency": self.concurrency,
            "autoscale": (low, high) if low is not None and high is not None else None,
            "time_limit_s": self.time_limit,
            "soft_time_limit_s": self.soft_time_limit,
            "max_tasks_per_child": self.max_tasks_per_child,
            "max_memory_per_child_kib": self.max_memory_per_child,
        }

    def as_settings(self) -> dict[str, Any]:
        """The profile's values keyed by ``WorkerSettings`` field (``None`` = not set here).

        A field of ``conf.OPTIONS``' ``profile_fields`` gives its value as stored; the pool, the
        two autoscale bounds and the queue list are read here.
        """
        autoscale = None
        if self.autoscale_min is not None and self.autoscale_max is not None:
            autoscale = (
                min(self.autoscale_min, self.autoscale_max),
                max(self.autoscale_min, self.autoscale_max),
            )
        # Validated again here: a row written without ``clean()`` must not reach the broker.
        queues = parse_queues(self.queues, name="queues") if self.queues.strip() else None
        read_here = {"pool": self.pool.strip() or None, "autoscale": autoscale, "queues": queues}
        values = {
            o.field: read_here[o.field] if o.field in read_here else getattr(self, name)
            for name, o in conf.OPTION_OF_PROFILE_FIELD.items()
        }
        return {**values, "paused": self.paused or None}


class WorkerState(models.TextChoices):
    ONLINE = "online", "online"
    STALE = "stale", "stale"
    STOPPED = "stopped", "stopped"
    #: no heartbeat for longer than DJWORKER["WORKER_LOST_AFTER"]: marked by another worker
    LOST = "lost", "lost"


class WorkerQuerySet(models.QuerySet["Worker"]):
    def in_state(self, state: str) -> WorkerQuerySet:
        """Workers whose ``current_state`` is ``state``.

        ``stale`` is never stored (a stale worker is one that stopped writing), so it is worked
        out here from each online worker's heartbeat age and interval.
        """
        if state not in WorkerState.values:
            raise ValueError(f"unknown worker state {state!r}; use one of {WorkerState.values}")
        online = self.filter(state=WorkerState.ONLINE)
        stale = [
            w.pk
            # select_related(None): the admin's queryset follows ``profile``, and Django 6.1
            # refuses to follow a relation that only() defers.
            for w in online.select_related(None).only(
                "state", "last_heartbeat", "heartbeat_interval_s"
            )
            if w.current_state == WorkerState.STALE
        ]
        if state == WorkerState.STALE:
            return self.filter(pk__in=stale)
        if state == WorkerState.ONLINE:
            return online.exclude(pk__in=stale)
        return self.filter(state=state)


class Worker(models.Model):
    """One running (or stopped) worker process, kept current by its heartbeat."""

    objects = WorkerQuerySet.as_manager()

    hostname = models.CharField(max_length=255, unique=True)
    pid = models.IntegerField(default=0)
    profile = models.ForeignKey(
        WorkerProfile,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="workers",
        verbose_name="profile",
    )
    pool = models.CharField(max_length=200, blank=True)
    pool_size = models.IntegerField(default=0, help_text="Slots now.")
    busy = models.IntegerField(default=0, help_text="Slots running a task now.")
    processed = models.BigIntegerField(default=0)
    failed = models.BigIntegerField(default=0)
    rss_kib = models.BigIntegerField(default=0, verbose_name="resident memory (KiB)")
    queues = models.CharField(max_length=1000, blank=True)
    paused = models.BooleanField(default=False)
    started_at = models.DateTimeField(default=timezone.now)
    last_heartbeat = models.DateTimeField(default=timezone.now)
    heartbeat_interval_s = models.FloatField(default=5.0)
    state = models.CharField(max_length=16, choices=WorkerState.choices, default=WorkerState.ONLINE)
    #: field -> layer ("env" or "cli") for settings the profile cannot change
    pinned = models.JSONField(default=dict, blank=True)
    #: [[field, value, layer], ...] as resolved now
    settings = models.JSONField(default=list, blank=True)
    applied_revision = models.PositiveIntegerField(default=0)
    profile_error = models.TextField(blank=True, help_text="Why the latest profile is not applied.")
    #: the latest autoscale decisions, newest last: [{"at": iso, "from": n, "to": m, "reason": s}]
    scale_events = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ("hostname",)
        permissions = [("control_worker", "Can send control commands to workers")]

    def __str__(self) -> str:
        return self.hostname

    @property
    def config(self) -> WorkerProfile | None:
        """The former name of ``profile``, kept for code that reads or sets it."""
        return self.profile

    @config.setter
    def config(self, value: WorkerProfile | None) -> None:
        self.profile = value

    @property
    def config_error(self) -> str:
        """The former name of ``profile_error``, kept for code that reads or sets it."""
        return self.profile_error

    @config_error.setter
    def config_error(self, value: str) -> None:
        self.profile_error = value

    @property
    def current_state(self) -> str:
        """``state`` as stored, but ``stale`` if an online worker's heartbeat is too old."""
        if self.state == WorkerState.ONLINE:
            age = timezone.now() - self.last_heartbeat
            if age > timedelta(seconds=self.heartbeat_interval_s * STALE_AFTER_INTERVALS):
                return WorkerState.STALE.value
        return str(self.state)


class CommandAction(models.TextChoices):
    PAUSE = "pause", "pause consumption"
    RESUME = "resume", "resume consumption"
    GROW = "grow", "grow the pool"
    SHRINK = "shrink", "shrink the pool"
    RESTART_POOL = "restart_pool", "restart the pool"
    SHUTDOWN = "shutdown", "warm shutdown"
    TERMINATE = "terminate", "terminate a running task"


class CommandStatus(models.TextChoices):
    PENDING = "pending", "pending"
    RUNNING = "running", "running"
    DONE = "done", "done"
    FAILED = "failed", "failed"


class ControlCommand(models.Model):
    """A request made of one worker (from the admin or a script) and its outcome."""

    worker = models.ForeignKey(Worker, on_delete=models.CASCADE, related_name="commands")
    action = models.CharField(max_length=32, choices=CommandAction.choices)
    argument = models.IntegerField(default=1, help_text="N for grow/shrink.")
    task_id = models.CharField(max_length=255, blank=True, help_text="The task to terminate.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    picked_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=CommandStatus.choices, default=CommandStatus.PENDING, db_index=True
    )
    message = models.TextField(blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.action} {self.worker_id} ({self.status})"

    @property
    def asked_for(self) -> str:
        """What was asked, as the admin shows it: ``grow 2``, ``terminate <task id>``, ``pause``."""
        if self.action == CommandAction.TERMINATE:
            return f"{self.action} {self.task_id}"
        if self.action in (CommandAction.GROW, CommandAction.SHRINK):
            return f"{self.action} {self.argument}"
        return str(self.action)


def bump_revision(config_id: int) -> None:
    """Make workers re-read a profile without changing it (used after a bulk update)."""
    WorkerProfile.objects.filter(pk=config_id).update(revision=F("revision") + 1)


def request_termination(task_id: str, *, requested_by: Any = None) -> ControlCommand:
    """Ask the worker running task ``task_id`` to stop it now; its result is recorded FAILED.

    Raises ``ValueError`` naming the reason when the task is not running on a live worker.
    The worker carries the command out within a control tick (about a second) and records the
    outcome on the returned ``ControlCommand``.
    """
    from djworker.models.results import TaskResult, TaskStatus

    result = TaskResult.objects.filter(id=task_id).first()
    if result is None or result.status != TaskStatus.RUNNING:
        status = "unknown" if result is None else result.status
        raise ValueError(f"task {task_id!r} is {status}; only a RUNNING task can be terminated")
    worker = Worker.objects.filter(hostname=result.worker_hostname).first()
    if worker is None or worker.current_state != WorkerState.ONLINE:
        state = "unknown" if worker is None else worker.current_state
        raise ValueError(
            f"task {task_id!r} runs on worker {result.worker_hostname!r}, which is {state}"
        )
    return ControlCommand.objects.create(
        worker=worker, action=CommandAction.TERMINATE, task_id=task_id, requested_by=requested_by
    )


class Dashboard(Worker):
    """The admin's live overview of workers, queues and tasks; a proxy so the index links it."""

    class Meta:
        proxy = True
        verbose_name = "dashboard"
        verbose_name_plural = "dashboard"
