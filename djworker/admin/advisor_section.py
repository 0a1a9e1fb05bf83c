"""The dashboard's pool advisor: the advice for a chosen window, and one click to create the
two profiles it names.

Shown to users who may view task results (it reads their timings); creating the profiles sets
their pool, a control power, so it needs ``control_worker`` besides ``add_workerprofile`` and
``change_workerprofile``. The advice is worked out when asked for (a window chosen on the
page), never on a refresh.
"""

from __future__ import annotations

import os
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import reverse

from djworker import advisor, permissions

#: the windows offered, in minutes
WINDOWS = (15, 60, 240, 1440)
PROFILE_PERMISSIONS = (
    permissions.CONTROL_WORKER,
    "djworker.add_workerprofile",
    "djworker.change_workerprofile",
)


def window_of(request: HttpRequest) -> int:
    text = request.GET.get("advisor_window") or request.POST.get("advisor_window") or ""
    return int(text) if text.isdigit() and int(text) in WINDOWS else advisor.DEFAULT_WINDOW_MINUTES


def can_create_profiles(request: HttpRequest) -> bool:
    return all(request.user.has_perm(p) for p in PROFILE_PERMISSIONS)


def context(request: HttpRequest) -> dict[str, Any]:
    """The advice when the page asks for it (``?advisor_window=MINUTES``), else only the form:
    the advice reads every run of the window, so the page does not pay for it on each visit."""
    minutes = window_of(request)
    base = {
        "advisor_window": minutes,
        "advisor_windows": WINDOWS,
        "advisor_min_runs": advisor.MIN_RUNS,
    }
    if "advisor_window" not in request.GET:
        return base
    advice = advisor.advise_from_results(window_minutes=minutes, cpu_count=os.cpu_count() or 1)
    return {
        "advice": advice,
        "advice_tasks": [
            {"load": load, "kind": str(kind), "share": f"{load.cpu_share:.2f}"}
            for load, kind in advice.tasks
        ],
        **base,
        "can_create_profiles": can_create_profiles(request),
        "create_profiles_url": reverse("admin:djworker_dashboard_profiles"),
    }


def create_profiles_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """POST: create or update the advised profiles, then back to the dashboard."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not can_create_profiles(request) or not request.user.has_perm("djworker.view_taskresult"):
        raise PermissionDenied
    minutes = window_of(request)
    advice = advisor.advise_from_results(window_minutes=minutes, cpu_count=os.cpu_count() or 1)
    try:
        names = advisor.create_profiles(advice)
    except ValidationError as exc:
        model_admin.message_user(
            request, f"No profile written: {'; '.join(exc.messages)}", messages.ERROR
        )
        names = []
    if names:
        model_admin.message_user(
            request,
            f"Profiles written: {', '.join(names)}. Start a worker on each with "
            + " and ".join(f"'runworker --profile {name}'" for name in names)
            + "; the tasks still need their queue option.",
        )
    elif not advice.groups:
        model_admin.message_user(request, "Nothing to advise yet: no profile written.")
    url = reverse("admin:djworker_dashboard_changelist")
    return HttpResponseRedirect(f"{url}?advisor_window={minutes}#dw-advisor")
