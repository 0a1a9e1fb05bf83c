"""The admin's queue page: each queue's depths as its broker reports them, and purge.

The figures come from ``djworker.queues`` (the broker), never from result rows. Purging needs
``djworker.purge_queue`` and a second, confirming POST.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from djworker import option_values, permissions
from djworker.broker import get_broker, redact_url
from djworker.cli.status import queue_names
from djworker.durations import for_people
from djworker.models import BrokerQueue, Worker, WorkerState
from djworker.queues import QueueStats, Unknown, inspector_for


def _age(q: QueueStats) -> str:
    age = q.oldest_age_s
    return str(age) if isinstance(age, Unknown) else for_people(age)


@admin.register(BrokerQueue)
class BrokerQueueAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        broker = get_broker()
        inspector = inspector_for(broker)
        can_purge = request.user.has_perm(permissions.PURGE_QUEUE)
        if request.method == "POST" and can_purge:
            chosen = [
                q for q in request.POST.getlist("queue") if not option_values.queue_name_error(q)
            ]
            if not chosen:
                self.message_user(request, "No queue selected.", messages.WARNING)
            elif request.POST.get("confirmed") == "yes":
                for name in chosen:
                    try:
                        purged = inspector.purge(name)
                    except Exception as exc:
                        self.message_user(
                            request,
                            f"Could not purge {name}: {type(exc).__name__}: {exc}",
                            messages.ERROR,
                        )
                        continue
                    self.message_user(request, f"Purged {purged} message(s) from {name}.")
                return HttpResponseRedirect(request.path)
            else:
                return TemplateResponse(
                    request,
                    "djworker/admin/queue_purge_confirm.html",
                    {
                        **self.admin_site.each_context(request),
                        "opts": self.opts,
                        "queues": chosen,
                        "title": "Purge queues?",
                        "broker": redact_url(broker.url),
                    },
                )
        live = [
            w
            for w in Worker.objects.exclude(state=WorkerState.STOPPED)
            if w.current_state == WorkerState.ONLINE
        ]
        stats: list[QueueStats] = []
        error = ""
        try:
            stats = inspector.stats(queue_names(live, [], inspector.known_queues()))
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        consumers = {q.name: sum(1 for w in live if q.name in w.queues.split(",")) for q in stats}
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Queues",
            "broker": redact_url(broker.url),
            "family": inspector.family,
            "rows": [(q, _age(q), consumers[q.name]) for q in stats],
            "error": error,
            "can_purge": can_purge,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "djworker/admin/queues.html", context)
