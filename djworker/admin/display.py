"""Columns for people: times to the second, durations rounded ("1.3 s", "4 min 10 s").

Django's admin shows a datetime in the locale's format, which for English has no seconds; a
task's times mean little without them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.utils import timezone
from django.utils.dateformat import format as date_format

from djworker.durations import for_people

TIME_FORMAT = "Y-m-d H:i:s"


def to_the_second(value: datetime | None) -> str:
    if value is None:
        return "-"
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return date_format(value, TIME_FORMAT)


def timestamp(field: str, description: str) -> Callable[[Any, Any], str]:
    """An admin column showing the datetime ``field`` to the second, sortable by it."""

    @admin.display(description=description, ordering=field)
    def column(self: Any, obj: Any) -> str:
        return to_the_second(getattr(obj, field))

    return column


def duration(field: str, description: str) -> Callable[[Any, Any], str]:
    """An admin column showing the seconds in ``field`` rounded for people, sortable by it."""

    @admin.display(description=description, ordering=field)
    def column(self: Any, obj: Any) -> str:
        return for_people(getattr(obj, field))

    return column
