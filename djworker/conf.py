"""Worker configuration: one frozen ``WorkerSettings`` resolved from layered sources.

Precedence, lowest first: code defaults < ``settings.DJWORKER`` < the admin profile (a
``WorkerConfig`` row) < ``DJWORKER_*`` environment variables < command-line options. Each value
remembers which layer set it, so the banner and the admin can show it; environment and
command-line values are *pinned* for the life of the process.

Nothing here reads settings or the environment at import time.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from djworker import bounds
from djworker.broker_conf import MAX_SECONDS, parse_broker_url, parse_transport_options, shorten
from djworker.exceptions import ConfigurationError

DEFAULT = "default"
SETTINGS = "settings"
ADMIN = "admin"
ENV = "env"
CLI = "cli"
LAYERS = (DEFAULT, SETTINGS, ADMIN, ENV, CLI)
PINNING_LAYERS = frozenset({ENV, CLI})

DEFAULT_QUEUE = "default"
DEFAULT_PROFILE = "default"
DEFAULT_BROKER_URL = "django://"
#: deliveries of one message that may start running before it is failed (0: no cap); see
#: docs/reliability.md
DEFAULT_MAX_DELIVERIES = 5
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ConfigurationError):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


# -- value parsers: each names the bad value and what is allowed ------------------------------


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


#: the longest profile name: ``WorkerConfig.name``
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
    from djworker import nodename

    text = parse_text(value, name=name)
    if len(text) > HOSTNAME_MAX_CHARS or not text.isprintable():
        raise ConfigurationError(
            f"{name} expects a worker name of at most {HOSTNAME_MAX_CHARS} printable "
            f"characters; got {len(text)} characters ({shorten(value)!r})"
        )
    error = nodename.template_error(text)
    if error:
        raise ConfigurationError(f"{name}: {error}")
    return text


def parse_pool(value: Any, *, name: str) -> str:
    from djworker.concurrency import POOLS, pool_choices

    pool = parse_text(value, name=name)
    if pool in POOLS or pool == "custom" or ":" in pool or "." in pool:
        return pool
    import difflib

    hint = difflib.get_close_matches(pool, list(POOLS), n=1)
    did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
    raise ConfigurationError(
        f"{name}: unknown pool {pool!r}; choose one of {', '.join(pool_choices())}.{did_you_mean}"
    )


# -- the resolved object ---------------------------------------------------------------------


def default_hostname() -> str:
    from djworker import nodename

    return nodename.expand(nodename.DEFAULT_TEMPLATE)


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """Everything a running worker needs, resolved once. Units are in the names."""

    pool: str = "threads"
    concurrency: int | None = None  # None: the pool's default (the CPU count)
    autoscale: tuple[int, int] | None = None
    autoscale_keepalive_s: float = 30.0
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    hostname: str = ""
    loglevel: str = "INFO"
    prefetch_multiplier: int = 4
    max_tasks_per_child: int | None = None
    max_memory_per_child_kib: int | None = None
    time_limit_s: float | None = None
    soft_time_limit_s: float | None = None
    max_deliveries: int = DEFAULT_MAX_DELIVERIES  # 0: no cap
    broker_url: str = DEFAULT_BROKER_URL
    broker_transport_options: Mapping[str, Any] = field(default_factory=dict)
    config_name: str = DEFAULT_PROFILE
    heartbeat_interval_s: float = 5.0
    control_interval_s: float = 1.0
    paused: bool = False  # set only by the admin profile: take no new messages
    #: the largest pool size any layer may ask for (settings.DJWORKER only)
    max_concurrency: int = bounds.DEFAULT_MAX_CONCURRENCY
    #: custom pool classes a profile may name (settings.DJWORKER only)
    custom_pools: tuple[str, ...] = ()
    #: finished results, control commands and autoscale decisions older than this are deleted
    #: (settings.DJWORKER only; None keeps them forever)
    result_expires_s: float | None = DEFAULT_RESULT_EXPIRES_S
    #: how often the workers of the cluster (one at a time) delete them
    result_cleanup_interval_s: float = DEFAULT_RESULT_CLEANUP_INTERVAL_S
    #: a worker silent this long is marked lost and its running tasks are settled
    worker_lost_after_s: float = DEFAULT_WORKER_LOST_AFTER_S
    # field name -> layer that set it (one of LAYERS)
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def pinned(self) -> dict[str, str]:
        return {k: v for k, v in self.sources.items() if v in PINNING_LAYERS}

    def initial_pool_size(self, fixed_size: int | None = None) -> int:
        """The pool size to start with.

        With autoscale, the bounds win: the pool starts at ``--concurrency`` if that lies
        within them (clamped into them if not), else at the minimum.
        """
        if self.autoscale:
            low, high = self.autoscale
            return min(max(self.concurrency or low, low), high)
        return self.concurrency or fixed_size or os.cpu_count() or 1

    def replace(self, **changes: Any) -> WorkerSettings:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Option:
    """One configurable value: where each layer spells it, and how its text is parsed."""

    field: str
    parse: Callable[..., Any]
    settings_key: str
    env_var: str
    cli_flag: str


OPTIONS: tuple[Option, ...] = (
    Option("pool", parse_pool, "POOL", "DJWORKER_POOL", "--pool"),
    Option(
        "concurrency",
        parse_optional_positive_int,
        "CONCURRENCY",
        "DJWORKER_CONCURRENCY",
        "--concurrency",
    ),
    Option("autoscale", parse_autoscale, "AUTOSCALE", "DJWORKER_AUTOSCALE", "--autoscale"),
    Option(
        "autoscale_keepalive_s",
        parse_seconds,
        "AUTOSCALE_KEEPALIVE",
        "DJWORKER_AUTOSCALE_KEEPALIVE",
        "--autoscale-keepalive",
    ),
    Option("queues", parse_queues, "QUEUES", "DJWORKER_QUEUES", "--queues"),
    Option("hostname", parse_hostname, "HOSTNAME", "DJWORKER_HOSTNAME", "--hostname"),
    Option("loglevel", parse_loglevel, "LOGLEVEL", "DJWORKER_LOGLEVEL", "--loglevel"),
    Option(
        "prefetch_multiplier",
        parse_multiplier,
        "PREFETCH_MULTIPLIER",
        "DJWORKER_PREFETCH_MULTIPLIER",
        "--prefetch-multiplier",
    ),
    Option(
        "max_tasks_per_child",
        parse_optional_positive_int,
        "MAX_TASKS_PER_CHILD",
        "DJWORKER_MAX_TASKS_PER_CHILD",
        "--max-tasks-per-child",
    ),
    Option(
        "max_memory_per_child_kib",
        parse_size_kib,
        "MAX_MEMORY_PER_CHILD",
        "DJWORKER_MAX_MEMORY_PER_CHILD",
        "--max-memory-per-child",
    ),
    Option("time_limit_s", parse_seconds, "TIME_LIMIT", "DJWORKER_TIME_LIMIT", "--time-limit"),
    Option(
        "soft_time_limit_s",
        parse_seconds,
        "SOFT_TIME_LIMIT",
        "DJWORKER_SOFT_TIME_LIMIT",
        "--soft-time-limit",
    ),
    Option(
        "max_deliveries",
        parse_delivery_cap,
        "MAX_DELIVERIES",
        "DJWORKER_MAX_DELIVERIES",
        "--max-deliveries",
    ),
    Option("broker_url", parse_broker_url, "BROKER_URL", "DJWORKER_BROKER_URL", "--broker"),
)
OPTIONS_BY_FIELD = {o.field: o for o in OPTIONS}
#: keys read from settings.DJWORKER only: they bound what the other layers may ask for, so the web
#: process (validating profiles and control commands) and the workers see the same values
SETTINGS_ONLY_KEYS = {
    "BROKER_TRANSPORT_OPTIONS",
    "MAX_CONCURRENCY",
    "CUSTOM_POOLS",
    "RESULT_EXPIRES",
    "RESULT_CLEANUP_INTERVAL",
    "METRICS_TOKEN",
    "WORKER_LOST_AFTER",
}
SETTINGS_KEYS = {o.settings_key for o in OPTIONS} | SETTINGS_ONLY_KEYS


def read_settings(djworker_settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Validate ``settings.DJWORKER`` and return it parsed, keyed by ``WorkerSettings`` field."""
    if djworker_settings is None:
        from django.conf import settings

        djworker_settings = getattr(settings, "DJWORKER", {})
    if not isinstance(djworker_settings, Mapping):
        raise SettingsError(
            f"settings.DJWORKER must be a dict; got {type(djworker_settings).__name__}"
        )
    unknown = sorted(set(djworker_settings) - SETTINGS_KEYS)
    if unknown:
        raise SettingsError(
            f"settings.DJWORKER has unknown keys {unknown}",
            hint=f"known keys: {', '.join(sorted(SETTINGS_KEYS))}",
        )
    parsed: dict[str, Any] = {}
    for option in OPTIONS:
        if option.settings_key in djworker_settings:
            value = djworker_settings[option.settings_key]
            try:
                parsed[option.field] = option.parse(
                    value, name=f"settings.DJWORKER[{option.settings_key!r}]"
                )
            except ConfigurationError as exc:
                raise SettingsError(str(exc)) from exc
    options = djworker_settings.get("BROKER_TRANSPORT_OPTIONS", {})
    if not isinstance(options, Mapping):
        raise SettingsError(
            "settings.DJWORKER['BROKER_TRANSPORT_OPTIONS'] must be a dict; "
            f"got {type(options).__name__}"
        )
    try:
        parsed["broker_transport_options"] = parse_transport_options(
            options, name="settings.DJWORKER['BROKER_TRANSPORT_OPTIONS']"
        )
        if "MAX_CONCURRENCY" in djworker_settings:
            parsed["max_concurrency"] = bounds.max_concurrency(djworker_settings)
        if "CUSTOM_POOLS" in djworker_settings:
            from djworker.concurrency import custom_pools

            parsed["custom_pools"] = custom_pools(djworker_settings)
        if "RESULT_EXPIRES" in djworker_settings:
            parsed["result_expires_s"] = parse_expiry(
                djworker_settings["RESULT_EXPIRES"], name="settings.DJWORKER['RESULT_EXPIRES']"
            )
        if "METRICS_TOKEN" in djworker_settings:  # checked here, used by djworker.metrics
            from djworker.metrics import parse_token

            parse_token(djworker_settings["METRICS_TOKEN"])
        if "RESULT_CLEANUP_INTERVAL" in djworker_settings:
            name = "settings.DJWORKER['RESULT_CLEANUP_INTERVAL']"
            interval = parse_seconds(djworker_settings["RESULT_CLEANUP_INTERVAL"], name=name)
            if interval is None:
                raise ConfigurationError(f"{name} expects a positive number of seconds; got None")
            parsed["result_cleanup_interval_s"] = interval
        if "WORKER_LOST_AFTER" in djworker_settings:
            name = "settings.DJWORKER['WORKER_LOST_AFTER']"
            lost_after = parse_seconds(djworker_settings["WORKER_LOST_AFTER"], name=name)
            if lost_after is None or lost_after < MIN_LOST_AFTER_S:
                raise ConfigurationError(
                    f"{name} expects at least {MIN_LOST_AFTER_S:g} seconds (two heartbeat "
                    f"intervals); got {shorten(djworker_settings['WORKER_LOST_AFTER'])!r}"
                )
            parsed["worker_lost_after_s"] = lost_after
    except ConfigurationError as exc:
        raise SettingsError(str(exc)) from exc
    return parsed


def read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    return {
        o.field: o.parse(environ[o.env_var], name=o.env_var)
        for o in OPTIONS
        if environ.get(o.env_var, "") != ""
    }


def load_config(
    *,
    cli: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    djworker_settings: Mapping[str, Any] | None = None,
    admin: Mapping[str, Any] | None = None,
    config_name: str = DEFAULT_PROFILE,
) -> WorkerSettings:
    """Merge the layers into one ``WorkerSettings``.

    ``cli`` and ``admin`` hold already-parsed values keyed by field name (``None`` = not given).
    """
    layers: list[tuple[str, Mapping[str, Any]]] = [
        (SETTINGS, read_settings(djworker_settings)),
        (ADMIN, admin or {}),
        (ENV, read_env(os.environ if environ is None else environ)),
        (CLI, cli or {}),
    ]
    values: dict[str, Any] = {}
    sources: dict[str, str] = {f.name: DEFAULT for f in dataclasses.fields(WorkerSettings)}
    for layer, given in layers:
        for key, value in given.items():
            if value is None:
                continue
            values[key] = value
            sources[key] = layer
    del sources["sources"]
    resolved = WorkerSettings(config_name=config_name, sources=sources, **values)
    check_time_limits(resolved)
    check_sizes(resolved)
    check_profile_pool(resolved)
    from djworker import nodename

    expanded = nodename.expand(resolved.hostname or nodename.DEFAULT_TEMPLATE)
    if len(expanded) > HOSTNAME_MAX_CHARS:
        raise ConfigurationError(
            f"-n/--hostname {resolved.hostname!r} expands to {len(expanded)} characters; "
            f"worker names have at most {HOSTNAME_MAX_CHARS}"
        )
    return resolved.replace(hostname=expanded)


def check_sizes(config: WorkerSettings) -> None:
    """Refuse a concurrency or an autoscale bound above ``MAX_CONCURRENCY``, naming its layer."""
    sizes = [("concurrency", config.concurrency)]
    if config.autoscale:
        sizes.append(("autoscale", config.autoscale[1]))
    for name, value in sizes:
        if value is not None:
            bounds.check_size(
                OPTIONS_BY_FIELD[name].cli_flag,
                value,
                config.max_concurrency,
                source=config.sources.get(name, DEFAULT),
            )


def check_profile_pool(config: WorkerSettings) -> None:
    """A profile names a built-in pool or an allow-listed class; the other layers name any.

    Whoever may edit a profile in the admin must not be able to make every worker import and
    run a class of their choosing; the command line, the environment and settings are the
    operator's own.
    """
    if config.sources.get("pool") != ADMIN:
        return
    from djworker.concurrency import profile_pool_error

    if error := profile_pool_error(config.pool, allowed=config.custom_pools):
        raise ConfigurationError(f"profile {config.config_name!r}: {error}")


def check_time_limits(config: WorkerSettings) -> None:
    """Refuse a soft limit at or above the hard one: the hard kill would always come first."""
    hard, soft = config.time_limit_s, config.soft_time_limit_s
    if hard is None or soft is None or soft < hard:
        return
    where = {
        name: f"{OPTIONS_BY_FIELD[name].cli_flag} {value:g} s from {config.sources.get(name)}"
        for name, value in (("time_limit_s", hard), ("soft_time_limit_s", soft))
    }
    raise ConfigurationError(
        f"the soft time limit must be below the hard one; got {where['soft_time_limit_s']} "
        f"and {where['time_limit_s']}: lower the soft limit, raise the hard one, or unset one"
    )


def spelled(config: WorkerSettings, field: str) -> str:
    """The option ``field`` as the layer that set it spells it, for error messages."""
    option, layer = OPTIONS_BY_FIELD[field], config.sources.get(field, DEFAULT)
    return {
        CLI: option.cli_flag,
        ENV: option.env_var,
        SETTINGS: f"settings.DJWORKER[{option.settings_key!r}]",
        ADMIN: f"{field.removesuffix('_s')} of profile {config.config_name!r}",
    }.get(layer, field)


def explain(config: WorkerSettings) -> list[tuple[str, Any, str]]:
    """(field, value, layer) for each configurable field, for banners and the admin."""
    return [
        (o.field, getattr(config, o.field), config.sources.get(o.field, DEFAULT)) for o in OPTIONS
    ]
