from __future__ import annotations

from django.apps import AppConfig


class DjworkerConfig(AppConfig):
    """Wires the system checks and autodiscovers every installed app's tasks."""

    name = "djworker"
    verbose_name = "djworker"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.utils.module_loading import autodiscover_modules

        from djworker import checks  # noqa: F401  (registers the system checks)

        autodiscover_modules("tasks")
