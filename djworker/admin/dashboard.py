"""The admin's live dashboard: workers, queues, running tasks and throughput on one page.

Staff only (the admin site's own check); each part needs its model's view permission
(``view_worker`` for workers and queues, ``view_taskresult`` for tasks and throughput), and the
terminate button ``control_worker`` as in the result list. The page reloads nothing: a small
inline script asks ``data/`` every few seconds for the same figures as JSON, with each part's
HTML rendered here, and swaps them in.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from djworker import overview, permissions
from djworker.admin import advisor_section
from djworker.models import Dashboard, TaskResult
from djworker.models.workers import request_termination

#: seconds between two refreshes of the page's figures
REFRESH_INTERVAL_S = 3
VIEW_WORKER = "djworker.view_worker"
VIEW_TASKRESULT = "djworker.view_taskresult"
#: the parts of the page, each a template fed by ``overview.snapshot``
PARTS = ("summary", "workers", "queues", "running", "throughput")


def is_staff(request: HttpRequest) -> bool:
    return bool(request.user.is_active and request.user.is_staff)


def can_terminate(request: HttpRequest) -> bool:
    return request.user.has_perm(permissions.CONTROL_WORKER) and request.user.has_perm(
        VIEW_TASKRESULT
    )


@admin.register(Dashboard)
class DashboardAdmin(admin.ModelAdmin):
    """Shows the dashboard in place of a change list, so the admin index links to it."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return is_staff(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return is_staff(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("", wrap(self.changelist_view), name="djworker_dashboard_changelist"),
            path("data/", wrap(self.data_view), name="djworker_dashboard_data"),
            path("terminate/", wrap(self.terminate_view), name="djworker_dashboard_terminate"),
            path(
                "advisor/profiles/",
                wrap(self.create_profiles_view),
                name="djworker_dashboard_profiles",
            ),
        ]

    # -- views -----------------------------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not is_staff(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Workers dashboard",
            "opts": self.opts,
            "refresh_url": reverse("admin:djworker_dashboard_data"),
            "refresh_interval_s": REFRESH_INTERVAL_S,
            "refresh_interval_ms": REFRESH_INTERVAL_S * 1000,
            **self.part_context(request),
            **(advisor_section.context(request) if request.user.has_perm(VIEW_TASKRESULT) else {}),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "djworker/admin/dashboard.html", context)

    def data_view(self, request: HttpRequest) -> JsonResponse:
        """The page's figures as JSON (``html``: each part rendered, for the page's script)."""
        if not is_staff(request):
            raise PermissionDenied
        context = self.part_context(request)
        data = dict(context["data"])
        data["html"] = {
            part: render_to_string(f"djworker/admin/dashboard_{part}.html", context, request)
            for part in PARTS
        }
        response = JsonResponse(data)
        response["Cache-Control"] = "no-store"
        return response

    @staticmethod
    def part_context(request: HttpRequest) -> dict[str, Any]:
        see_workers = request.user.has_perm(VIEW_WORKER)
        see_tasks = request.user.has_perm(VIEW_TASKRESULT)
        return {
            "data": overview.snapshot(see_workers=see_workers, see_tasks=see_tasks),
            "see_workers": see_workers,
            "see_tasks": see_tasks,
            "can_terminate": can_terminate(request),
            "terminate_url": reverse("admin:djworker_dashboard_terminate"),
            "view_worker_permission": VIEW_WORKER,
            "view_taskresult_permission": VIEW_TASKRESULT,
        }

    def create_profiles_view(self, request: HttpRequest) -> HttpResponse:
        return advisor_section.create_profiles_view(self, request)

    def terminate_view(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not can_terminate(request):
            raise PermissionDenied
        task_id = request.POST.get("task_id", "")
        try:
            command = request_termination(task_id, requested_by=request.user)
        except ValueError as exc:
            self.message_user(request, f"Not sent: {exc}", messages.WARNING)
        else:
            self.log_change(request, TaskResult.objects.get(pk=task_id), "Control: terminate")
            self.message_user(
                request,
                f"Asked worker {command.worker} to terminate task {task_id}; the task leaves "
                "the running list once it is done.",
            )
        return HttpResponseRedirect(reverse("admin:djworker_dashboard_changelist"))
