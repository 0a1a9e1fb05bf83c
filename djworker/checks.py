"""System checks for djworker's settings (ids djworker.E001...)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register


@register()
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from djworker.conf import SettingsError, read_settings

    try:
        read_settings()
    except SettingsError as exc:
        return [Error(str(exc), hint=exc.hint, id="djworker.E001")]
    return []
