"""Django error pages and error e-mails without broker passwords.

Django's ``SafeExceptionReporterFilter`` hides settings whose *name* looks secret (``PASSWORD``,
``SECRET_KEY``...), but ``DJWORKER['BROKER_URL']`` carries its password inside the value. This
filter also hides the password of every URL found in a setting's text or in a traceback's local
variables. Use it with ``DEFAULT_EXCEPTION_REPORTER_FILTER =
"djworker.error_reports.ExceptionReporterFilter"``; a system check (``djworker.W001``) asks for it
when ``DEBUG`` is on and the broker URL has a password.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter

from djworker.broker_conf import hide_url_passwords


class ExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's safe filter, and the password of any URL in a value replaced by ``***``."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        return hide_url_passwords(cleansed) if isinstance(cleansed, str) else cleansed

    def cleanse_special_types(self, request: HttpRequest | None, value: Any) -> Any:
        value = super().cleanse_special_types(request, value)
        return hide_url_passwords(value) if isinstance(value, str) else value
