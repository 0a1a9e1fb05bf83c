"""``TaskResult``: one row per task id, written by the process that runs the task."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class TaskStatus(models.TextChoices):
    """Statuses, one-to-one with django.tasks' ``TaskResultStatus``.

    READY covers both "waiting to run" and "waiting to run again" (a retry), as in django.tasks.
    """

    READY = "READY", "Ready"
    RUNNING = "RUNNING", "Running"
    SUCCESSFUL = "SUCCESSFUL", "Successful"
    FAILED = "FAILED", "Failed"


FINISHED_STATUSES = frozenset({TaskStatus.SUCCESSFUL, TaskStatus.FAILED})


class TaskResult(models.Model):
    id = models.CharField(primary_key=True, max_length=64, editable=False)
    task_name = models.CharField(max_length=255, db_index=True)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=16, choices=TaskStatus.choices, default=TaskStatus.READY, db_index=True
    )
    result = models.JSONField(null=True, blank=True)
    exception_class = models.CharField(max_length=255, blank=True)
    exception_message = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    exit_status = models.CharField(
        max_length=64, blank=True, help_text="How the process running the task ended, if it died."
    )
    queue = models.CharField(max_length=200, db_index=True)
    priority = models.SmallIntegerField(default=0)
    worker_hostname = models.CharField(max_length=255, blank=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Runs started so far.")
    deliveries = models.PositiveIntegerField(
        default=0,
        help_text="Runs the current message started (a retry is a new message); the worker "
        "fails the task once this passes its delivery cap.",
    )
    enqueued_at = models.DateTimeField(default=timezone.now, db_index=True)
    run_after = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cpu_time_s = models.FloatField(null=True, blank=True, help_text="CPU seconds of the last run.")
    wall_time_s = models.FloatField(
        null=True, blank=True, help_text="Wall seconds of the last run."
    )
    # Filled for results enqueued through django.tasks (djworker.backend.WorkerBackend).
    backend = models.CharField(
        max_length=64,
        blank=True,
        help_text="The django.tasks backend alias; empty for @djworker.task.",
    )
    task_priority = models.SmallIntegerField(
        null=True,
        blank=True,
        help_text="The django.tasks priority (-100..100); priority is the broker level (0..9).",
    )
    worker_ids = models.JSONField(
        default=list, blank=True, help_text="The worker of each run started, in order."
    )
    errors = models.JSONField(
        default=list,
        blank=True,
        help_text="One entry per failed run: exception_class_path and traceback.",
    )
    last_attempted_at = models.DateTimeField(
        null=True, blank=True, help_text="When the latest run started (started_at: the first)."
    )
    # Lineage of an operator's retry, both ways. Plain ids, not foreign keys: either row may
    # be deleted by result expiry without touching the other.
    retry_of = models.CharField(
        max_length=64, blank=True, db_index=True, help_text="The run this one retries."
    )
    retried_as = models.CharField(
        max_length=64, blank=True, help_text="The latest retry an operator sent of this run."
    )
    revoked_at = models.DateTimeField(
        null=True, blank=True, help_text="When an operator revoked it; it will not run."
    )
    revoked_by = models.CharField(max_length=150, blank=True, help_text="Who revoked it.")
    # What the task reports with djworker.progress() while it runs (written at most twice a
    # second, never by a task shorter than that).
    progress_done = models.BigIntegerField(null=True, blank=True)
    progress_total = models.BigIntegerField(null=True, blank=True)
    progress_note = models.CharField(max_length=200, blank=True)
    progress_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "task result"
        ordering = ["-enqueued_at"]
        permissions = [
            ("view_task_arguments", "Can see task arguments, results and error details"),
            ("retry_task", "Can retry failed tasks"),
            ("revoke_task", "Can revoke waiting tasks"),
        ]
        indexes = [
            models.Index(fields=["status", "-enqueued_at"], name="djworker_result_status_idx"),
            # The dashboard's throughput chart and the pool advisor read the last hour(s).
            models.Index(fields=["finished_at"], name="djworker_result_finished_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} {self.id} {self.status}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES
