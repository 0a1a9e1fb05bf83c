"""A worker's admin page: live figures, control buttons, and each command's outcome.

The page's top panel refreshes every few seconds from ``<id>/live/`` (JSON, for users who may
view workers). Its buttons (pause, resume, grow N, shrink N, restart the pool, warm shutdown)
ask for confirmation, post to ``<id>/control/`` (``control_worker`` needed, as for the list's
actions, which they share), and the panel shows the command's outcome once the worker reports
it.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.loader import render_to_string
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from djworker import overview, permissions
from djworker.concurrency.registry import POOLS, aliases_with
from djworker.control_commands import ADMIN_ACTIONS
from djworker.models import ControlCommand, Worker

#: seconds between two refreshes of the worker page's panel
REFRESH_INTERVAL_S = 2
#: commands listed in the panel, newest first
RECENT_COMMANDS = 5
#: the buttons, in the command table's order: action, label, what the confirmation asks
BUTTONS = tuple(
    (entry.action, entry.offer.button, entry.offer.confirm)
    for entry in ADMIN_ACTIONS
    if entry.offer is not None
)
#: the actions that take N
SIZED_ACTIONS = tuple(entry.action for entry in ADMIN_ACTIONS if entry.sized)


class WorkerPageMixin:
    """Mixed into ``WorkerAdmin``: the live panel, the buttons and their two URLs."""

    change_form_template: Any = "djworker/admin/worker_change_form.html"

    # provided by ModelAdmin
    admin_site: Any
    has_view_permission: Any
    # provided by WorkerAdmin
    send_command: Any

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        own = [
            path("<int:pk>/live/", wrap(self.live_view), name="djworker_worker_live"),
            path("<int:pk>/control/", wrap(self.control_view), name="djworker_worker_control"),
        ]
        return own + super().get_urls()  # type: ignore[misc]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        worker = self._worker(request, object_id)
        context = {**self.live_context(request, worker), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, context)  # type: ignore[misc,no-any-return]

    def _worker(self, request: HttpRequest, pk: Any) -> Worker:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            return Worker.objects.select_related("profile").get(pk=pk)
        except (Worker.DoesNotExist, ValueError, TypeError):
            raise Http404(f"no worker with id {pk!r}") from None

    def live_context(self, request: HttpRequest, worker: Worker) -> dict[str, Any]:
        commands = list(
            ControlCommand.objects.filter(worker=worker).select_related("requested_by")[
                :RECENT_COMMANDS
            ]
        )
        return {
            "live": overview.worker_row(worker, now=timezone.now()),
            "live_commands": commands,
            "can_control": request.user.has_perm(permissions.CONTROL_WORKER),
            "buttons": BUTTONS,
            "sized_actions": SIZED_ACTIONS,
            # a built-in pool that cannot change its size (solo) gets no grow or shrink button;
            # a custom pool's worker answers for itself
            "resizable": worker.pool in aliases_with("supports_autoscale")
            or worker.pool not in POOLS,
            "control_url": reverse("admin:djworker_worker_control", args=[worker.pk]),
            "live_url": reverse("admin:djworker_worker_live", args=[worker.pk]),
            "refresh_interval_ms": REFRESH_INTERVAL_S * 1000,
            "generated_at": timezone.now().isoformat(),
        }

    def live_view(self, request: HttpRequest, pk: int) -> JsonResponse:
        """The panel's figures and latest commands as JSON, with the panel rendered."""
        context = self.live_context(request, self._worker(request, pk))
        data = {
            "generated_at": context["generated_at"],
            "worker": context["live"],
            "commands": [
                {
                    "id": c.pk,
                    "asked_for": c.asked_for,
                    "status": c.status,
                    "message": c.message,
                    "created_at": c.created_at.isoformat(),
                }
                for c in context["live_commands"]
            ],
            "html": {"live": render_to_string("djworker/admin/worker_live.html", context, request)},
        }
        response = JsonResponse(data)
        response["Cache-Control"] = "no-store"
        return response

    def control_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """One button: the same action the worker list sends, to this worker alone."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        worker = self._worker(request, pk)
        if not request.user.has_perm(permissions.CONTROL_WORKER):
            raise PermissionDenied
        action = request.POST.get("command", "")
        entry = next((entry for entry in ADMIN_ACTIONS if entry.action == action), None)
        if entry is None:
            allowed = ", ".join(entry.action for entry in ADMIN_ACTIONS)
            return HttpResponse(f"unknown command {action[:40]!r}; allowed: {allowed}", status=400)
        self.send_command(request, Worker.objects.filter(pk=worker.pk), entry)
        return HttpResponseRedirect(reverse("admin:djworker_worker_change", args=[worker.pk]))
