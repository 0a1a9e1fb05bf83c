"""The worker profiles' former admin URLs redirect permanently to the current ones.

``/admin/djworker/workerconfig/...`` (the model's name until it became ``WorkerProfile``) is
answered with a 301 to ``/admin/djworker/workerprofile/...``: the same page (list, add, change,
history, delete) with the same query string, so bookmarks and links keep working. The redirect
reveals nothing: the page it leads to checks permissions as always.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponsePermanentRedirect
from django.urls import URLPattern, re_path, reverse
from django.utils.encoding import escape_uri_path

from djworker.models.former_names import WorkerConfig


@admin.register(WorkerConfig)
class FormerProfileURLs(admin.ModelAdmin):
    """Only redirects; no page of its own, and not listed on the admin's index."""

    def get_model_perms(self, request: HttpRequest) -> dict[str, bool]:
        return {}

    def has_module_permission(self, request: HttpRequest) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        return [re_path(r"^(?P<rest>.*)$", self.redirect, name="djworker_workerconfig_redirect")]

    def redirect(self, request: HttpRequest, rest: str) -> HttpResponsePermanentRedirect:
        # ``rest`` is decoded: escaped again, so an encoded ``?`` or ``#`` stays in the path.
        changelist = reverse(f"{self.admin_site.name}:djworker_workerprofile_changelist")
        target = changelist + escape_uri_path(rest)
        query = request.META.get("QUERY_STRING", "")
        return HttpResponsePermanentRedirect(f"{target}?{query}" if query else target)
