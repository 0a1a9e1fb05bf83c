"""System checks for djworker's settings (ids djworker.E001...)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register

#: apps djworker's models and admin depend on: a command records the user who asked for it,
#: and the admin's permissions are ``auth`` permissions on content types
REQUIRED_APPS = ("django.contrib.auth", "django.contrib.contenttypes")


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from djworker.conf import SettingsError, read_settings

    try:
        read_settings()
    except SettingsError as exc:
        return [Error(str(exc), hint=exc.hint, id="djworker.E001")]
    return []


@register()
def check_required_apps(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django.apps import apps

    missing = [name for name in REQUIRED_APPS if not apps.is_installed(name)]
    if not missing:
        return []
    return [
        Error(
            f"djworker needs {' and '.join(repr(name) for name in missing)} in INSTALLED_APPS",
            hint=f"add {', '.join(repr(name) for name in REQUIRED_APPS)} to INSTALLED_APPS "
            "(djworker records who sent a control command, and its admin uses their permissions)",
            id="djworker.E002",
        )
    ]
