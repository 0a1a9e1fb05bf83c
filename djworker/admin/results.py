"""Task results in the admin: listed, filtered and inspected, never edited.

A task's arguments, result, exception message and traceback may hold personal or secret data:
they are shown only to users with ``djworker.view_task_arguments``; ``view_taskresult`` alone
shows the rest of the row (status, timings, worker, exception class).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from djworker import lost_workers, manual_retry, permissions, revocation
from djworker.admin.display import duration, timestamp
from djworker.exceptions import OperationRefused
from djworker.models import TaskResult
from djworker.models.workers import request_termination


@admin.register(TaskResult)
class TaskResultAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "task_name",
        "status_display",
        "progress_bar",
        "queue",
        "worker_hostname",
        "attempts",
        "enqueued",
        "finished",
        "wall_time",
    )
    list_filter = ("status", "task_name", "queue", "worker_hostname")
    search_fields = ("id", "task_name", "exception_class")
    date_hierarchy = "enqueued_at"
    list_per_page = 50
    fieldsets = (
        (None, {"fields": ("id", "task_name", "status", "queue", "priority", "worker_hostname")}),
        ("Operator", {"fields": ("retry_of_link", "retried_as_link", "revoked_at", "revoked_by")}),
        ("Call", {"fields": ("arguments", "run_after")}),
        (
            "Outcome",
            {
                "fields": (
                    "result_json",
                    "exception_class",
                    "exception_message",
                    "traceback_block",
                    "exit_status",
                )
            },
        ),
        (
            "Timing",
            {
                "fields": (
                    "attempts",
                    "deliveries",
                    "enqueued",
                    "started",
                    "finished",
                    "cpu_time",
                    "wall_time",
                )
            },
        ),
        (
            "django.tasks",
            {
                "fields": (
                    "backend",
                    "task_priority",
                    "worker_ids",
                    "errors",
                    "last_attempted_at",
                ),
                "classes": ("collapse",),
            },
        ),
    )

    actions = ("terminate", "retry", "revoke")

    def has_control_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(permissions.CONTROL_WORKER)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(permissions.RETRY_TASK)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(permissions.REVOKE_TASK)

    @admin.action(description="Retry the selected finished tasks", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[TaskResult]) -> None:
        done = self._each(request, queryset, lambda r: f"Retried as {manual_retry.retry(r)}")
        if done:
            self.message_user(
                request, f"Sent {done} retry(s); each is a new row linked to its original."
            )

    @admin.action(description="Revoke the selected waiting tasks", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[TaskResult]) -> None:
        who = f"{request.user.get_username() or 'anonymous'} (admin)"

        def revoke_one(result: TaskResult) -> str:
            revocation.revoke(result.id, by=who)
            return "Revoked"

        done = self._each(request, queryset, revoke_one)
        if done:
            self.message_user(request, f"Revoked {done} task(s): no worker will run them.")

    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[TaskResult],
        act: Callable[[TaskResult], str],
    ) -> int:
        """Apply ``act`` to each row, logging what it returns; refusals become warnings."""
        done = 0
        for result in queryset:
            try:
                change = act(result)
            except OperationRefused as exc:
                self.message_user(request, f"Not done: {exc}", messages.WARNING)
                continue
            self.log_change(request, result, change)
            done += 1
        return done

    enqueued = timestamp("enqueued_at", "enqueued at")
    started = timestamp("started_at", "started at")
    finished = timestamp("finished_at", "finished at")
    cpu_time = duration("cpu_time_s", "CPU time")
    wall_time = duration("wall_time_s", "wall time")

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: TaskResult) -> str:
        if obj.exit_status == lost_workers.EXIT_STATUS and obj.status == "READY":
            return "Ready (abandoned: worker lost, waiting for the broker to deliver it again)"
        if obj.revoked_at is not None:
            return "Revoked"
        return str(obj.get_status_display())

    @admin.display(description="progress")
    def progress_bar(self, obj: TaskResult) -> str:
        if obj.status != "RUNNING" or obj.progress_done is None:
            return ""
        if not obj.progress_total:
            return format_html("{} {}", obj.progress_done, obj.progress_note)
        return format_html(
            '<progress value="{}" max="{}"></progress> {}/{} {}',
            obj.progress_done,
            obj.progress_total,
            obj.progress_done,
            obj.progress_total,
            obj.progress_note,
        )

    @admin.display(description="retry of")
    def retry_of_link(self, obj: TaskResult) -> str:
        return _result_link(obj.retry_of)

    @admin.display(description="retried as")
    def retried_as_link(self, obj: TaskResult) -> str:
        return _result_link(obj.retried_as)

    @admin.action(description="Terminate the selected running tasks", permissions=["control"])
    def terminate(self, request: HttpRequest, queryset: QuerySet[TaskResult]) -> None:
        sent, refused = 0, []
        user = request.user if request.user.is_authenticated else None
        for result in queryset:
            try:
                request_termination(result.id, requested_by=user)
            except ValueError as exc:
                refused.append(str(exc))
                continue
            self.log_change(request, result, "Control: terminate")
            sent += 1
        if sent:
            self.message_user(
                request,
                f"Asked the workers to terminate {sent} task(s). Each result turns FAILED "
                "(Terminated) once done; outcomes are under Control commands.",
            )
        for reason in refused:
            self.message_user(request, f"Not sent: {reason}", messages.WARNING)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if request.user.has_perm(permissions.VIEW_TASK_ARGUMENTS):
            return self.fieldsets
        return [
            (name, {**options, "fields": _without_payload(options["fields"])})
            for name, options in self.fieldsets
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [
            str(f) for _, options in self.get_fieldsets(request, obj) for f in options["fields"]
        ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="arguments")
    def arguments(self, obj: TaskResult) -> str:
        return format_html("<pre>args={}\nkwargs={}</pre>", _pretty(obj.args), _pretty(obj.kwargs))

    @admin.display(description="result")
    def result_json(self, obj: TaskResult) -> str:
        return format_html("<pre>{}</pre>", _pretty(obj.result))

    @admin.display(description="traceback")
    def traceback_block(self, obj: TaskResult) -> str:
        return format_html("<pre>{}</pre>", obj.traceback or "-")

    @admin.display(description="arguments, result and error details")
    def payload_hidden(self, obj: TaskResult) -> str:
        return (
            "Hidden: they need the permission "
            f"{permissions.VIEW_TASK_ARGUMENTS!r} (Can see task arguments, results and error "
            "details)."
        )


#: the fields that show what a task was given and gave back, and what replaces them
PAYLOAD_FIELDS = ("arguments", "result_json", "exception_message", "traceback_block", "errors")


def _without_payload(fields: Any) -> tuple[str, ...]:
    kept = tuple(f for f in fields if f not in PAYLOAD_FIELDS)
    return (*kept, "payload_hidden") if "arguments" in fields else kept


def _result_link(task_id: str) -> str:
    if not task_id:
        return "-"
    url = reverse("admin:djworker_taskresult_change", args=[task_id])
    return format_html('<a href="{}">{}</a>', url, task_id)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)
