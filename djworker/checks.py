"""System checks for djworker's settings (ids djworker.E001..., warnings djworker.W001...)."""

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


@register(deploy=False)
def check_error_pages_hide_the_broker_password(
    app_configs: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """With DEBUG on, Django's error page lists the settings: the broker password must not show."""
    from django.conf import settings
    from django.core.checks import Warning
    from django.views.debug import get_default_exception_reporter_filter

    url = getattr(settings, "DJWORKER", {}).get("BROKER_URL", "")
    if not settings.DEBUG or not isinstance(url, str):
        return []
    from djworker.broker_conf import hide_url_passwords

    if hide_url_passwords(url) == url:  # no password to show
        return []
    shown = get_default_exception_reporter_filter().cleanse_setting("DJWORKER", settings.DJWORKER)
    if not isinstance(shown, dict) or shown.get("BROKER_URL") != url:
        return []
    return [
        Warning(
            "DEBUG is on and Django's error page would show the password in "
            "settings.DJWORKER['BROKER_URL']",
            hint='set DEFAULT_EXCEPTION_REPORTER_FILTER = "djworker.error_reports.'
            'ExceptionReporterFilter", or turn DEBUG off',
            id="djworker.W001",
        )
    ]
