"""Worker profiles, running workers and control commands in the admin.

Worker profiles are edited like any model; saving one reaches every worker that
follows it within a few seconds. A profile's ``paused`` and ``pool`` fields act like control
commands, so they need ``djworker.control_worker`` too, and a custom pool class needs
``djworker.choose_custom_pool`` (see ``djworker.permissions``). Workers are read-only rows kept
by their heartbeat; control actions on them (pause, resume, grow, shrink, restart the pool,
warm shutdown) need ``djworker.control_worker``, create ``ControlCommand`` rows the workers
carry out, and are written to the admin history.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponsePermanentRedirect,
    JsonResponse,
)
from django.template.loader import render_to_string
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from djworker import bounds, conf, permissions
from djworker.admin import profile_form
from djworker.admin.display import timestamp
from djworker.admin.worker_page import WorkerPageMixin
from djworker.concurrency.registry import PROFILE_POOLS
from djworker.control_commands import ADMIN_ACTIONS, ControlAction
from djworker.exceptions import ConfigurationError
from djworker.models import CommandAction, ControlCommand, Worker, WorkerProfile, WorkerState
from djworker.models.workers import WorkerQuerySet

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldOpts, _FieldsetSpec
    from django.utils.functional import _StrOrPromise

STATE_COLOURS = {"online": "#2e7d32", "stale": "#b26a00", "stopped": "#757575"}


def profile_fieldsets() -> _FieldsetSpec:
    """The profile form's sections: each field in the section its ``conf.OPTIONS`` entry names
    (``profile_section``), in the model's order, the custom pool class after the pool; the
    first section starts with the name and ends with ``paused``, which acts as a control."""
    sections: dict[str, list[str]] = {"": ["name"]}
    for model_field in WorkerProfile._meta.fields:
        option = conf.OPTION_OF_PROFILE_FIELD.get(model_field.name)
        if option is not None:
            fields = sections.setdefault(option.profile_section, [])
            fields.append(model_field.name)
            if model_field.name == "pool":
                fields.append("custom_pool")
    sections[""].append("paused")
    fieldsets: list[tuple[_StrOrPromise | None, _FieldOpts]] = [
        (title or None, {"fields": tuple(fields)}) for title, fields in sections.items()
    ]
    fieldsets.append(
        ("Workers following this profile", {"fields": ("revision", "updated_at", "followers")})
    )
    return fieldsets


@admin.register(WorkerProfile)
class WorkerProfileAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "pool_display",
        "concurrency",
        "autoscale_display",
        "queues",
        "paused",
        "revision",
        "updated_at",
        "workers_applied",
    )
    readonly_fields = ("revision", "updated_at", "followers")
    form = profile_form.ProfileForm
    change_form_template = "djworker/admin/profile_change_form.html"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # Pausing and the pool kind act on running workers like a control command does.
        readonly = list(super().get_readonly_fields(request, obj))
        if not request.user.has_perm(permissions.CONTROL_WORKER):
            readonly.extend([*permissions.CONTROL_FIELDS, "custom_pool"])
        return readonly

    def get_urls(self) -> list[URLPattern]:
        live = path(
            "<int:pk>/followers/",
            self.admin_site.admin_view(self.followers_view),
            name="djworker_workerprofile_followers",
        )
        return [live, *super().get_urls()]

    def followers_view(self, request: HttpRequest, pk: int) -> JsonResponse:
        """The followers panel, for the page's live refresh."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        profile = WorkerProfile.objects.filter(pk=pk).first()
        if profile is None:
            raise Http404(f"no worker profile with id {pk!r}")
        rows = profile_form.worker_outcomes(profile)
        html = render_to_string("djworker/admin/profile_followers.html", {"rows": rows})
        response = JsonResponse({"workers": rows, "html": {"followers": html}})
        response["Cache-Control"] = "no-store"
        return response

    def save_model(self, request: HttpRequest, obj: WorkerProfile, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        for row in profile_form.worker_outcomes(obj):
            sentence = profile_form.outcome_sentence(row)
            self.message_user(request, f"{sentence[0].upper()}{sentence[1:]}.")

    @admin.display(description="custom pool class")
    def custom_pool(self, obj: WorkerProfile | None) -> str:
        pool = obj.pool.strip() if obj is not None else ""
        return pool if pool and pool not in PROFILE_POOLS else "-"

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[WorkerProfile]]:
        form = super().get_form(request, obj, change, **kwargs)
        if "pool" not in form.base_fields or request.user.has_perm(permissions.CHOOSE_CUSTOM_POOL):
            return form

        class ProfileForm(form):  # type: ignore[valid-type,misc]
            def clean_pool(self) -> str:
                pool = str(super().clean_pool()).strip()
                before = self.instance.pool.strip() if self.instance.pk else ""
                if pool and pool != before and pool not in PROFILE_POOLS:
                    raise forms.ValidationError(
                        f"Choosing a custom pool class ({pool!r}) needs the permission "
                        f"{permissions.CHOOSE_CUSTOM_POOL!r}; choose one of "
                        f"{', '.join(PROFILE_POOLS)}."
                    )
                return pool

        return ProfileForm

    fieldsets = profile_fieldsets()

    @admin.display(description="pool")
    def pool_display(self, obj: WorkerProfile) -> str:
        return obj.pool or "(inherited)"

    @admin.display(description="autoscale")
    def autoscale_display(self, obj: WorkerProfile) -> str:
        if obj.autoscale_min is None or obj.autoscale_max is None:
            return "-"
        return f"{obj.autoscale_min}..{obj.autoscale_max}"

    @admin.display(description="applied by")
    def workers_applied(self, obj: WorkerProfile) -> str:
        online = obj.workers.exclude(state="stopped")
        applied = online.filter(applied_revision=obj.revision).count()
        return f"{applied} of {online.count()} workers"

    @admin.display(description="workers")
    def followers(self, obj: WorkerProfile) -> str:
        rows = profile_form.worker_outcomes(obj) if obj.pk else []
        panel = render_to_string("djworker/admin/profile_followers.html", {"rows": rows})
        if not obj.pk:
            return panel
        url = reverse("admin:djworker_workerprofile_followers", args=[obj.pk])
        return format_html(
            '<div id="dw-followers" data-refresh-url="{}" data-refresh-interval-ms="2000">{}</div>',
            url,
            panel,  # a SafeString: the template escaped every value
        )


def _applied(worker: Worker, profile: WorkerProfile | None) -> str:
    if profile is None:
        return "-"
    if worker.applied_revision == profile.revision:
        return f"yes (rev {profile.revision})"
    note = f": {worker.profile_error}" if worker.profile_error else ""
    return f"no: rev {worker.applied_revision} of {profile.revision}{note}"


class WorkerActionForm(ActionForm):
    # Text, checked by the action itself: a number field the form refuses would only say
    # "No action selected." instead of why N is wrong.
    n = forms.CharField(
        initial="1",
        required=False,
        label="N",
        help_text="slots to grow or shrink by",
        widget=forms.TextInput(attrs={"size": 4}),
    )


class CurrentStateFilter(admin.SimpleListFilter):
    """Filters on ``current_state``, so stale workers (never stored as such) can be found."""

    title = "state"
    parameter_name = "current_state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(WorkerState.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Worker]) -> QuerySet[Worker]:
        value = self.value()
        if value not in WorkerState.values:
            return queryset
        return cast(WorkerQuerySet, queryset).in_state(value)


AdminAction = Callable[[Any, HttpRequest, QuerySet[Worker]], None]


def admin_action(entry: ControlAction) -> AdminAction:
    """The worker list's action for one entry of the command table."""
    assert entry.offer is not None, f"{entry.action} is not offered in the admin"

    def send(model_admin: WorkerAdmin, request: HttpRequest, queryset: QuerySet[Worker]) -> None:
        model_admin.send_command(request, queryset, entry)

    send.__name__ = send.__qualname__ = str(entry.action)
    return admin.action(description=entry.offer.description, permissions=["control"])(send)


@admin.register(Worker)
class WorkerAdmin(WorkerPageMixin, admin.ModelAdmin):
    list_display = (
        "hostname",
        "state_display",
        "profile",
        "pool",
        "pool_size",
        "busy",
        "processed",
        "paused",
        "profile_applied",
        "heartbeat",
    )
    list_filter = (CurrentStateFilter, "pool", "profile")
    search_fields = ("hostname",)
    action_form = WorkerActionForm
    # One action per entry of the command table the admin offers, named for its action
    # (the value posted as ``action``).
    actions = tuple(admin_action(entry) for entry in ADMIN_ACTIONS)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        # A link made before the worker's ``config`` field became ``profile`` filters on
        # ``config__...``: it gets the same list under the field's new name.
        former = [key for key in request.GET if key.split("__")[0] == "config"]
        if former:
            query = request.GET.copy()
            for key in former:
                query.setlist("profile" + key.removeprefix("config"), query.pop(key))
            return HttpResponsePermanentRedirect(f"{request.path}?{query.urlencode()}")
        return super().changelist_view(request, extra_context)

    fieldsets = (
        (
            None,
            {
                "fields": (
                    "hostname",
                    "pid",
                    "state_display",
                    "profile",
                    "profile_applied",
                    "profile_error",
                )
            },
        ),
        ("Pool", {"fields": ("pool", "pool_size", "busy", "paused", "queues")}),
        (
            "Counters",
            {"fields": ("processed", "failed", "rss_kib", "started", "heartbeat")},
        ),
        ("Settings (value and the layer that set it)", {"fields": ("settings_table",)}),
        ("Autoscale: recent decisions", {"fields": ("scale_decisions",)}),
        ("Control commands", {"fields": ("recent_commands",)}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [str(f) for fs in self.fieldsets for f in fs[1]["fields"]]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_control_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(permissions.CONTROL_WORKER)

    started = timestamp("started_at", "started at")
    heartbeat = timestamp("last_heartbeat", "last heartbeat")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # An online worker would write its row back at the next heartbeat: refuse instead.
        if obj is not None and obj.current_state == WorkerState.ONLINE:
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Worker]) -> None:
        online = list(
            cast(WorkerQuerySet, queryset)
            .in_state(WorkerState.ONLINE)
            .values_list("hostname", flat=True)
        )
        if online:
            self.message_user(
                request,
                f"Not deleted (online; stop them first): {', '.join(online)}",
                messages.WARNING,
            )
        queryset.exclude(hostname__in=online).delete()

    # -- columns ---------------------------------------------------------------------------------

    @admin.display(description="state", ordering="state")
    def state_display(self, obj: Worker) -> str:
        state = obj.current_state
        return format_html('<b style="color:{}">{}</b>', STATE_COLOURS.get(state, "#000"), state)

    @admin.display(description="memory (MiB)", ordering="rss_kib")
    def rss_mib(self, obj: Worker) -> str:
        return f"{obj.rss_kib / 1024:.0f}"

    @admin.display(description="profile applied")
    def profile_applied(self, obj: Worker) -> str:
        return _applied(obj, obj.profile)

    @admin.display(description="settings")
    def settings_table(self, obj: Worker) -> str:
        rows = [
            {
                "field": field,
                # Lists (queues, autoscale bounds) read as they are typed on the command line.
                "value": ",".join(map(str, value)) if isinstance(value, list) else value,
                "layer": layer,
                "pinned": field in obj.pinned,
            }
            for field, value, layer in obj.settings
        ]
        return render_to_string("djworker/admin/worker_settings.html", {"rows": rows})

    @admin.display(description="decisions")
    def scale_decisions(self, obj: Worker) -> str:
        events = list(reversed(obj.scale_events))
        return render_to_string("djworker/admin/scale_decisions.html", {"events": events})

    @admin.display(description="latest commands")
    def recent_commands(self, obj: Worker) -> str:
        commands = obj.commands.select_related("requested_by")[:10]
        return render_to_string("djworker/admin/control_commands.html", {"commands": commands})

    # -- actions -----------------------------------------------------------------------------------

    def send_command(
        self, request: HttpRequest, queryset: QuerySet[Worker], entry: ControlAction
    ) -> None:
        """Create one command row per selected worker that is not stopped, and say so."""
        action = entry.action
        n = 1
        if entry.sized:
            try:
                n = bounds.parse_step(request.POST.get("n", ""), bound=bounds.max_concurrency())
            except ConfigurationError as exc:
                self.message_user(request, f"Nothing sent: {exc}", messages.ERROR)
                return
        label = CommandAction(action).label
        sent = 0
        for worker in queryset:
            if worker.current_state == "stopped":
                continue
            ControlCommand.objects.create(
                worker=worker,
                action=action,
                argument=n,
                requested_by=request.user if request.user.is_authenticated else None,
            )
            detail = f" by {n}" if entry.sized else ""
            self.log_change(request, worker, f"Control: {label}{detail}")
            sent += 1
        skipped = queryset.count() - sent
        self.message_user(
            request,
            f"Sent '{label}' to {sent} worker(s)"
            + (f"; skipped {skipped} stopped worker(s)" if skipped else "")
            + ". Outcomes appear under each worker's control commands.",
        )


@admin.register(ControlCommand)
class ControlCommandAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "worker",
        "asked_for",
        "requested_by",
        "status",
        "message",
        "finished_at",
    )
    list_filter = ("status", "action")
    search_fields = ("worker__hostname", "task_id", "message")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
