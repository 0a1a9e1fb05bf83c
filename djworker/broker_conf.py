"""Checking a broker URL and its transport options before anything connects, and hiding secrets.

A worker refuses a URL whose transport djworker does not run on, or whose client library is not
installed, in one line that lists what is allowed; it refuses a transport option it does not
know or a value out of range the same way. Each part of a failover URL (``;``-separated) is
checked, and each part's password is hidden wherever a URL is shown.

Nothing here imports a broker client at import time; checking a URL imports kombu's module for
its transport, which is how a missing client library is found.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from djworker.broker_schemes import PROFILES, REFUSED
from djworker.exceptions import ConfigurationError

#: the longest duration a setting accepts (a year): timers cannot hold an unbounded one
MAX_SECONDS = 365 * 24 * 3600


def shorten(value: Any, limit: int = 60) -> Any:
    """A long value cut for an error message, so the message stays one readable line."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}..."
    return value


# -- the URL ------------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """The broker URL without its passwords (each part of a failover URL), for banners and logs."""
    return ";".join(_redact_one(part) for part in url.split(";"))


def _redact_one(url: str) -> str:
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL at all: hide whatever could be a secret
        return "***" if "@" in url else url
    if password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


_URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@;]*):[^\s/@;]*@")


def hide_url_passwords(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


def parse_broker_url(value: Any, *, name: str) -> str:
    """A URL of a transport djworker runs on, whose client library is installed."""
    url = str(value).strip()
    if not url:
        raise ConfigurationError(f"{name} must not be empty")
    schemes = set()
    for part in url.split(";"):
        scheme = _scheme(part, name=name)
        allowed = ", ".join(f"{known}://" for known in PROFILES)
        if scheme in REFUSED:
            raise ConfigurationError(
                f"{name} uses {scheme}://, which djworker does not run on: {REFUSED[scheme]}. "
                f"Use one of {allowed}; got {redact_url(url)!r}"
            )
        if scheme not in PROFILES:
            raise ConfigurationError(
                f"{name} names an unknown transport {scheme!r} in {redact_url(url)!r}; use one of "
                f"{allowed}"
            )
        schemes.add(PROFILES[scheme].family)
    if len(schemes) > 1:
        raise ConfigurationError(
            f"{name} is a failover URL whose parts must use one transport; got "
            f"{', '.join(sorted(schemes))} in {redact_url(url)!r}"
        )
    first = _scheme(url.split(";")[0], name=name)
    profile = PROFILES[first]
    try:
        # Imported, not looked up: what kombu's module needs differs between kombu versions.
        if profile.client_module:
            importlib.import_module(profile.client_module)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"{name} uses the {first} transport, which needs {exc.name!r}, not installed: "
            f"pip install '{profile.requirement}'"
        ) from None
    return url


def _scheme(url: str, *, name: str) -> str:
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise ConfigurationError(
            f"{name} is not a broker URL ({exc}): {redact_url(url)!r}"
        ) from None
    if not parts.scheme:
        raise ConfigurationError(
            f"{name} expects a URL like redis://host:6379/0; got {shorten(redact_url(url))!r}"
        )
    # kombu's "redis+socket://" and the like: the transport is the part before "+"
    return parts.scheme.lower().split("+")[0]


# -- transport options ----------------------------------------------------------------------------


def _seconds(value: Any, *, above_zero: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    low_ok = value > 0 if above_zero else value >= 0
    return math.isfinite(value) and low_ok and value <= MAX_SECONDS


def _whole(value: Any, *, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= 2**31 - 1


#: kind of value -> (its check, how an error message describes it)
_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seconds": (
        lambda v: _seconds(v, above_zero=True),
        f"a number of seconds above 0 and at most {MAX_SECONDS}",
    ),
    "seconds0": (
        lambda v: _seconds(v, above_zero=False),
        f"a number of seconds from 0 to {MAX_SECONDS}",
    ),
    "count": (lambda v: _whole(v, low=1), "a whole number of at least 1"),
    "count0": (lambda v: _whole(v, low=0), "a whole number of at least 0"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "text": (lambda v: isinstance(v, str) and 0 < len(v) <= 200, "a text of 1 to 200 characters"),
    "mapping": (lambda v: isinstance(v, Mapping), "a dict"),
    "steps": (
        lambda v: isinstance(v, list | tuple) and bool(v) and all(_whole(s, low=0) for s in v),
        "a list of whole numbers of at least 0",
    ),
    "strategy": (
        lambda v: v in ("round_robin", "priority", "sorted"),
        "one of round_robin, priority, sorted",
    ),
}

#: every transport option djworker passes on, and the kind of value it takes
TRANSPORT_OPTIONS: dict[str, str] = {
    # every transport
    "visibility_timeout": "seconds",
    "polling_interval": "seconds",
    "max_retries": "count0",
    "interval_start": "seconds0",
    "interval_step": "seconds0",
    "interval_max": "seconds0",
    # django://
    "database": "text",
    # redis
    "priority_steps": "steps",
    "sep": "text",
    "queue_order_strategy": "strategy",
    "global_keyprefix": "text",
    "socket_timeout": "seconds",
    "socket_connect_timeout": "seconds",
    "socket_keepalive": "bool",
    "socket_keepalive_options": "mapping",
    "max_connections": "count",
    "health_check_interval": "seconds0",
    "retry_on_timeout": "bool",
    "client_name": "text",
    "unacked_restore_limit": "count",
    "unacked_restore_throttle": "count",
    "unacked_mutex_expire": "count",
    "fanout_prefix": "bool",
    "fanout_patterns": "bool",
    # amqp
    "confirm_publish": "bool",
    "connect_timeout": "seconds",
    "read_timeout": "seconds",
    "write_timeout": "seconds",
}


def parse_transport_options(value: Any, *, name: str) -> dict[str, Any]:
    """Refuse an unknown option or a value out of range, naming it and what is allowed."""
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"{name} must be a dict; got {type(value).__name__}")
    for key, option_value in value.items():
        kind = TRANSPORT_OPTIONS.get(key)
        if kind is None:
            raise ConfigurationError(
                f"{name} has an unknown option {shorten(key)!r}; known options: "
                f"{', '.join(TRANSPORT_OPTIONS)}"
            )
        check, allowed = _KINDS[kind]
        if not check(option_value):
            raise ConfigurationError(
                f"{name}[{key!r}] expects {allowed}; got {shorten(option_value)!r}"
            )
        if key == "database":
            from django.conf import settings

            if option_value not in settings.DATABASES:
                raise ConfigurationError(
                    f"{name}['database'] expects an alias of settings.DATABASES "
                    f"({', '.join(settings.DATABASES)}); got {shorten(option_value)!r}"
                )
    return dict(value)
