"""Option values: each parser turns one raw value into its typed value, or names what is wrong.

Every layer (command line, ``settings.DJWORKER``, ``DJWORKER_*`` variables, a worker profile)
goes through these, from the option table in ``conf.py``, so a value is refused the same way
wherever it was set: one line naming the option, the value and what is allowed.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Any

from djworker.broker_conf import MAX_SECONDS, shorten
from djworker.exceptions import ConfigurationError
from djworker.name_templates import template_error

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def parse_positive_int(value: Any, *, name: str) -> int:
    try:
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError
    except (TypeError, ValueError, OverflowError):  # OverflowError: float("inf")
        number = 0
    if number < 1 or isinstance(value, bool):
        raise ConfigurationError(f"{name} expects a positive integer; got {value!r}")
    return number


def parse_optional_positive_int(value: Any, *, name: str) -> int | None:
    if value in (None, "", 0, "0"):
        return None
    return parse_positive_int(value, name=name)


DEFAULT_RESULT_EXPIRES_S = 7 * 86400.0
DEFAULT_RESULT_CLEANUP_INTERVAL_S = 300.0
DEFAULT_WORKER_LOST_AFTER_S = 60.0
#: two heartbeat intervals: a live, idle worker writes its row at least every 5 s
MIN_LOST_AFTER_S = 10.0
#: the longest RESULT_EXPIRES: a hundred years (longer is as good as None)
MAX_EXPIRES_S = 100 * 365 * 86400.0


def parse_expiry(value: Any, *, name: str) -> float | None:
    """Seconds (a number or a ``timedelta``) before a finished result is deleted; None: never."""
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not 0 < seconds <= MAX_EXPIRES_S
    ):
        raise ConfigurationError(
            f"{name} expects a positive number of seconds or a timedelta (at most 100 years), "
            f"or None to keep results forever; got {shorten(value)!r}"
        )
    return float(seconds)


def parse_seconds(value: Any, *, name: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    # nan compares false with everything, so it is refused by name, with inf
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_SECONDS or isinstance(value, bool):
        raise ConfigurationError(
            f"{name} expects a positive number of seconds, at most {MAX_SECONDS} (a year); "
            f"got {shorten(value)!r}"
        )
    return seconds


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS_KIB = {"": 1, "B": 1 / 1024, "K": 1, "M": 1024, "G": 1024 * 1024}


def parse_size_kib(value: Any, *, name: str) -> int | None:
    """A memory size in KiB: a bare integer is KiB (as in Celery); ``200MB``, ``1.5G`` also work."""
    if value in (None, "", 0, "0"):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ConfigurationError(
            f"{name} expects a size: an integer in KiB, or a number with KB/MB/GB; got {value!r}"
        )
    number, unit = match.groups()
    kib = int(float(number) * _SIZE_UNITS_KIB[(unit or "")[:1].upper()])
    if kib < 1:
        raise ConfigurationError(f"{name} must be at least 1 KiB; got {value!r}")
    return kib


def parse_autoscale(value: Any, *, name: str = "--autoscale") -> tuple[int, int] | None:
    """``"1,3"`` or ``"3,1"`` -> ``(1, 3)``: the smaller number is always the minimum."""
    if value in (None, ""):
        return None
    parts = list(value) if isinstance(value, list | tuple) else str(value).split(",")
    try:
        numbers = [int(str(p).strip()) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) != 2 or min(numbers) < 1:
        raise ConfigurationError(
            f"{name} expects two positive integers like 1,3 (minimum and maximum, either order); "
            f"got {value!r}"
        )
    return (min(numbers), max(numbers))


#: longest queue name, in characters: the ``queue`` columns of the result and ``django://`` tables
QUEUE_NAME_MAX_CHARS = 200
#: longest queue name, in UTF-8 bytes: AMQP names are short strings of at most 255 bytes
QUEUE_NAME_MAX_BYTES = 255
_QUEUE_NAME = re.compile(r"[\w.:-]+")


def queue_name_error(queue: Any) -> str:
    """Why ``queue`` cannot be a queue name on every broker, or "" if it can.

    The one rule for queue names, shared by the command line, settings, the environment, task
    options and the admin's profiles.
    """
    if not isinstance(queue, str) or not _QUEUE_NAME.fullmatch(queue):
        return f"queue names are letters, digits, '_', '.', ':' or '-'; got {shorten(queue)!r}"
    if len(queue) > QUEUE_NAME_MAX_CHARS or len(queue.encode()) > QUEUE_NAME_MAX_BYTES:
        return (
            f"queue names have at most {QUEUE_NAME_MAX_CHARS} characters and "
            f"{QUEUE_NAME_MAX_BYTES} bytes in UTF-8; got {len(queue)} characters "
            f"({shorten(queue)!r})"
        )
    return ""


def parse_queues(value: Any, *, name: str) -> tuple[str, ...]:
    names = [q.strip() for q in value.split(",")] if isinstance(value, str) else list(value)
    if not names:
        raise ConfigurationError(f"{name} expects comma-separated queue names; got {value!r}")
    for queue in names:
        if error := queue_name_error(queue):
            raise ConfigurationError(f"{name} expects comma-separated queue names; {error}")
    return tuple(dict.fromkeys(names))


def parse_loglevel(value: Any, *, name: str) -> str:
    level = str(value).upper()
    if level not in LOG_LEVELS:
        raise ConfigurationError(f"{name} expects one of {', '.join(LOG_LEVELS)}; got {value!r}")
    return level


def parse_multiplier(value: Any, *, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        number = -1
    if number < 0 or isinstance(value, bool):
        raise ConfigurationError(
            f"{name} expects a whole number >= 0 (0 means no prefetch limit); got {value!r}"
        )
    return number


def parse_delivery_cap(value: Any, *, name: str) -> int:
    """Deliveries a message may start before it is failed: a whole number, 0 for no cap."""
    try:
        number = int(value)
        if isinstance(value, float) and number != value:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        number = -1
    if number < 0 or isinstance(value, bool):
        raise ConfigurationError(
            f"{name} expects a whole number >= 0 (deliveries of one message; 0 means no cap); "
            f"got {value!r}"
        )
    return number


def parse_text(value: Any, *, name: str) -> str:
    text = str(value).strip()
    if not text:
        raise ConfigurationError(f"{name} must not be empty")
    return text


#: the longest profile name: ``WorkerProfile.name``
PROFILE_NAME_MAX_CHARS = 100
#: the longest worker name: ``Worker.hostname`` and ``TaskResult.worker_hostname``
HOSTNAME_MAX_CHARS = 255
_PROFILE_NAME = re.compile(r"[-a-zA-Z0-9_]+")  # the admin's slug rule


def parse_profile_name(value: Any, *, name: str) -> str:
    """A profile name the admin accepts too: a slug of at most 100 characters."""
    text = parse_text(value, name=name)
    if not _PROFILE_NAME.fullmatch(text) or len(text) > PROFILE_NAME_MAX_CHARS:
        raise ConfigurationError(
            f"{name} expects a profile name of at most {PROFILE_NAME_MAX_CHARS} ASCII letters, "
            f"digits, '_' or '-'; got {shorten(value)!r}"
        )
    return text


def parse_hostname(value: Any, *, name: str) -> str:
    """A worker name or name template (``%h``, ``%n``, ``%d``, ``%i``, ``%%``; see nodename)."""
    text = parse_text(value, name=name)
    if len(text) > HOSTNAME_MAX_CHARS or not text.isprintable():
        raise ConfigurationError(
            f"{name} expects a worker name of at most {HOSTNAME_MAX_CHARS} printable "
            f"characters; got {len(text)} characters ({shorten(value)!r})"
        )
    error = template_error(text)
    if error:
        raise ConfigurationError(f"{name}: {error}")
    return text


def parse_pool(value: Any, *, name: str) -> str:
    from djworker.concurrency.lookup import pool_choices
    from djworker.concurrency.registry import POOLS

    pool = parse_text(value, name=name)
    if pool in POOLS or pool == "custom" or ":" in pool or "." in pool:
        return pool
    import difflib

    hint = difflib.get_close_matches(pool, list(POOLS), n=1)
    did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
    raise ConfigurationError(
        f"{name}: unknown pool {pool!r}; choose one of {', '.join(pool_choices())}.{did_you_mean}"
    )


#: how ``settings.DJWORKER["METRICS_TOKEN"]`` is named in messages (read by ``djworker.metrics``)
TOKEN_SETTING = "settings.DJWORKER['METRICS_TOKEN']"
MIN_TOKEN_CHARS = 16


def parse_token(value: Any, *, name: str = TOKEN_SETTING) -> str | None:
    """The bearer token Prometheus sends: None (no token), or 16 or more non-blank characters."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) < MIN_TOKEN_CHARS or value != value.strip():
        shown = f"{len(value)} characters" if isinstance(value, str) else repr(value)
        raise ConfigurationError(
            f"{name} expects None or a string of at least {MIN_TOKEN_CHARS} characters without "
            f"surrounding spaces; got {shown}"
        )
    return value
