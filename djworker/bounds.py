"""The largest pool a worker may have: ``settings.DJWORKER["MAX_CONCURRENCY"]``.

One bound, read from settings (so the web process that validates a profile or a control command
and the worker that applies them agree), applied everywhere a size is given: the command line,
``settings.DJWORKER`` and the environment (``conf.load_config``), a profile
(``WorkerProfile.clean``), the N of a grow or shrink command (the admin action and the worker),
and the pool itself (``BasePool``). Without it, ``grow 2147483647`` made a pool whose size no
longer fitted the ``Worker`` table, and every heartbeat after it failed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from djworker.exceptions import ConfigurationError

#: the default bound: far above what one process runs well with threads or prefork, and enough
#: for the green pools' usual sizes; raise it in settings for larger green pools
DEFAULT_MAX_CONCURRENCY = 1000
#: the largest number the ``Worker`` and ``ControlCommand`` integer columns hold
INTEGER_COLUMN_MAX = 2**31 - 1
SETTING = "settings.DJWORKER['MAX_CONCURRENCY']"


def parse_max_concurrency(value: Any, *, name: str = SETTING) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value <= INTEGER_COLUMN_MAX
    ):
        raise ConfigurationError(
            f"{name} expects a whole number from 1 to {INTEGER_COLUMN_MAX}; got {value!r}"
        )
    return value


def max_concurrency(djworker_settings: Mapping[str, Any] | None = None) -> int:
    """The bound in force: the setting, validated, or the default."""
    if djworker_settings is None:
        from django.conf import settings

        djworker_settings = getattr(settings, "DJWORKER", {})
    if not isinstance(djworker_settings, Mapping) or "MAX_CONCURRENCY" not in djworker_settings:
        return DEFAULT_MAX_CONCURRENCY
    return parse_max_concurrency(djworker_settings["MAX_CONCURRENCY"])


def check_size(what: str, value: int, bound: int, *, source: str = "") -> None:
    """Refuse a size above the bound in one line naming the value, where it came from, and the
    bound."""
    if value > bound:
        where = f" (from {source})" if source else ""
        raise ConfigurationError(
            f"{what} {value}{where} is above the maximum pool size {bound} ({SETTING})"
        )


def parse_step(text: Any, *, bound: int) -> int:
    """The N of a grow or shrink command, typed in the admin: a whole number from 1 to ``bound``."""
    try:
        number = int(str(text).strip() or "1")
    except ValueError:
        number = 0
    if not 1 <= number <= bound:
        raise ConfigurationError(
            f"N must be a whole number from 1 to {bound} ({SETTING}); got {str(text)[:40]!r}"
        )
    return number
