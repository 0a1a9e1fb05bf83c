"""Worker configuration: one frozen ``WorkerSettings`` resolved from layered sources.

Precedence, lowest first: code defaults < ``settings.DJWORKER`` < the worker profile (a
``WorkerProfile`` row) < ``DJWORKER_*`` environment variables < command-line options. Each value
remembers which layer set it, so the banner and the admin can show it; environment and
command-line values are *pinned* for the life of the process.

Nothing here reads settings or the environment at import time.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from djworker import bounds, name_templates
from djworker.broker_conf import parse_broker_url, parse_transport_options, shorten
from djworker.concurrency.lookup import custom_pools, profile_pool_error
from djworker.concurrency.registry import alias_names, builtin_class_of
from djworker.concurrency.settings_check import check_settings, field_name
from djworker.exceptions import ConfigurationError
from djworker.option_values import (
    DEFAULT_RESULT_CLEANUP_INTERVAL_S,
    DEFAULT_RESULT_EXPIRES_S,
    DEFAULT_WORKER_LOST_AFTER_S,
    HOSTNAME_MAX_CHARS,
    LOG_LEVELS,
    MIN_LOST_AFTER_S,
    parse_autoscale,
    parse_delivery_cap,
    parse_expiry,
    parse_hostname,
    parse_loglevel,
    parse_multiplier,
    parse_optional_positive_int,
    parse_pool,
    parse_positive_int,
    parse_queues,
    parse_seconds,
    parse_size_kib,
    parse_token,
)

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


class SettingsError(ConfigurationError):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


# -- the resolved object ---------------------------------------------------------------------


def default_hostname() -> str:
    return name_templates.expand(name_templates.DEFAULT_TEMPLATE)


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
    profile_name: str = DEFAULT_PROFILE
    heartbeat_interval_s: float = 5.0
    control_interval_s: float = 1.0
    paused: bool = False  # set only by the worker profile: take no new messages
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
    """One configurable value: where each layer spells it, and how its text is parsed.

    The command line (``runworker``'s arguments and ``--help``) and the worker profile (which
    of its fields set the value, and where the admin's form shows them) follow from the entry.
    """

    field: str
    parse: Callable[..., Any]
    settings_key: str
    env_var: str
    cli_flag: str
    #: what ``runworker --help`` says of it
    help: str
    #: the command line's one-letter flag, if any
    short_flag: str = ""
    #: the value's name in ``--help`` (argparse's default: the field in capitals)
    metavar: str | None = None
    #: the command line's parser where it is stricter than ``parse`` (no "none" to unset)
    cli_parse: Callable[..., Any] | None = None
    #: the ``WorkerProfile`` fields that set it (none: a profile cannot)
    profile_fields: tuple[str, ...] = ()
    #: the section of the profile form that shows those fields ("": the first)
    profile_section: str = ""


AUTOSCALE = "Autoscale"
CONSUMING = "Consuming"
LIMITS = "Limits"
OPTIONS: tuple[Option, ...] = (
    Option(
        "pool",
        parse_pool,
        "POOL",
        "DJWORKER_POOL",
        "--pool",
        f"{alias_names()}, custom, or a module.path:Class (default: threads)",
        short_flag="-P",
        profile_fields=("pool",),
    ),
    Option(
        "concurrency",
        parse_optional_positive_int,
        "CONCURRENCY",
        "DJWORKER_CONCURRENCY",
        "--concurrency",
        "number of pool slots (default: the number of CPUs; 1 for solo)",
        short_flag="-c",
        cli_parse=parse_positive_int,
        profile_fields=("concurrency",),
    ),
    Option(
        "autoscale",
        parse_autoscale,
        "AUTOSCALE",
        "DJWORKER_AUTOSCALE",
        "--autoscale",
        "let the pool size follow demand between two bounds, in either order: 1,3",
        metavar="MIN,MAX",
        profile_fields=("autoscale_min", "autoscale_max"),
        profile_section=AUTOSCALE,
    ),
    Option(
        "autoscale_keepalive_s",
        parse_seconds,
        "AUTOSCALE_KEEPALIVE",
        "DJWORKER_AUTOSCALE_KEEPALIVE",
        "--autoscale-keepalive",
        "seconds without need before an autoscaled pool shrinks (default: 30)",
        metavar="SECONDS",
        profile_fields=("autoscale_keepalive",),
        profile_section=AUTOSCALE,
    ),
    Option(
        "queues",
        parse_queues,
        "QUEUES",
        "DJWORKER_QUEUES",
        "--queues",
        "comma-separated queues to consume (default: default)",
        short_flag="-Q",
        profile_fields=("queues",),
        profile_section=CONSUMING,
    ),
    Option(
        "hostname",
        parse_hostname,
        "HOSTNAME",
        "DJWORKER_HOSTNAME",
        "--hostname",
        "the worker's name, unique among running workers; %%h host, %%n its first label, %%d "
        "domain, %%i pid, %%%% a percent sign (default: djworker@%%h)",
        short_flag="-n",
    ),
    Option(
        "loglevel",
        parse_loglevel,
        "LOGLEVEL",
        "DJWORKER_LOGLEVEL",
        "--loglevel",
        f"one of {', '.join(LOG_LEVELS)} (default: INFO)",
        short_flag="-l",
    ),
    Option(
        "prefetch_multiplier",
        parse_multiplier,
        "PREFETCH_MULTIPLIER",
        "DJWORKER_PREFETCH_MULTIPLIER",
        "--prefetch-multiplier",
        "messages reserved per pool slot; 0 means no limit (default: 4)",
        profile_fields=("prefetch_multiplier",),
        profile_section=CONSUMING,
    ),
    Option(
        "max_tasks_per_child",
        parse_optional_positive_int,
        "MAX_TASKS_PER_CHILD",
        "DJWORKER_MAX_TASKS_PER_CHILD",
        "--max-tasks-per-child",
        "replace a pool process after this many tasks (prefork)",
        cli_parse=parse_positive_int,
        profile_fields=("max_tasks_per_child",),
        profile_section=LIMITS,
    ),
    Option(
        "max_memory_per_child_kib",
        parse_size_kib,
        "MAX_MEMORY_PER_CHILD",
        "DJWORKER_MAX_MEMORY_PER_CHILD",
        "--max-memory-per-child",
        "replace a pool process whose resident memory exceeds SIZE after its task: KiB, or a "
        "size such as 200MB (prefork)",
        metavar="SIZE",
        profile_fields=("max_memory_per_child",),
        profile_section=LIMITS,
    ),
    Option(
        "time_limit_s",
        parse_seconds,
        "TIME_LIMIT",
        "DJWORKER_TIME_LIMIT",
        "--time-limit",
        "hard time limit for every task",
        metavar="SECONDS",
        profile_fields=("time_limit",),
        profile_section=LIMITS,
    ),
    Option(
        "soft_time_limit_s",
        parse_seconds,
        "SOFT_TIME_LIMIT",
        "DJWORKER_SOFT_TIME_LIMIT",
        "--soft-time-limit",
        "soft time limit: raises SoftTimeLimitExceeded inside the task",
        metavar="SECONDS",
        profile_fields=("soft_time_limit",),
        profile_section=LIMITS,
    ),
    Option(
        "max_deliveries",
        parse_delivery_cap,
        "MAX_DELIVERIES",
        "DJWORKER_MAX_DELIVERIES",
        "--max-deliveries",
        "fail a message once N of its deliveries started without finishing (its process "
        f"died); 0 means no cap (default: {DEFAULT_MAX_DELIVERIES}; a task's max_deliveries "
        "wins)",
        metavar="N",
        profile_fields=("max_deliveries",),
        profile_section=LIMITS,
    ),
    Option(
        "broker_url",
        parse_broker_url,
        "BROKER_URL",
        "DJWORKER_BROKER_URL",
        "--broker",
        "broker URL, overriding settings.DJWORKER['BROKER_URL']",
    ),
)
OPTIONS_BY_FIELD = {o.field: o for o in OPTIONS}
#: ``WorkerProfile`` field -> the option it sets, in the order of ``OPTIONS``
OPTION_OF_PROFILE_FIELD = {name: o for o in OPTIONS for name in o.profile_fields}
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
            parsed["custom_pools"] = custom_pools(djworker_settings)
        if "RESULT_EXPIRES" in djworker_settings:
            parsed["result_expires_s"] = parse_expiry(
                djworker_settings["RESULT_EXPIRES"], name="settings.DJWORKER['RESULT_EXPIRES']"
            )
        if "METRICS_TOKEN" in djworker_settings:  # checked here, used by djworker.metrics
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
    profile_name: str = DEFAULT_PROFILE,
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
    resolved = WorkerSettings(profile_name=profile_name, sources=sources, **values)
    check_sizes(resolved)
    check_profile_pool(resolved)
    check_pool_settings(resolved)
    expanded = name_templates.expand(resolved.hostname or name_templates.DEFAULT_TEMPLATE)
    if len(expanded) > HOSTNAME_MAX_CHARS:
        raise ConfigurationError(
            f"-n/--hostname {resolved.hostname!r} expands to {len(expanded)} characters; "
            f"worker names have at most {HOSTNAME_MAX_CHARS}"
        )
    return resolved.replace(hostname=expanded)


def check_sizes(settings: WorkerSettings) -> None:
    """Refuse a concurrency or an autoscale bound above ``MAX_CONCURRENCY``, naming its layer."""
    sizes = [("concurrency", settings.concurrency)]
    if settings.autoscale:
        sizes.append(("autoscale", settings.autoscale[1]))
    for name, value in sizes:
        if value is not None:
            bounds.check_size(
                OPTIONS_BY_FIELD[name].cli_flag,
                value,
                settings.max_concurrency,
                source=settings.sources.get(name, DEFAULT),
            )


def check_profile_pool(settings: WorkerSettings) -> None:
    """A profile names a built-in pool or an allow-listed class; the other layers name any.

    Whoever may edit a profile in the admin must not be able to make every worker import and
    run a class of their choosing; the command line, the environment and settings are the
    operator's own.
    """
    if settings.sources.get("pool") != ADMIN:
        return
    if error := profile_pool_error(settings.pool, allowed=settings.custom_pools):
        raise ConfigurationError(f"profile {settings.profile_name!r}: {error}")


def check_pool_settings(settings: WorkerSettings) -> None:
    """The one pool-settings check (``check_settings``), for the pool the layers name.

    A built-in pool's rules are checked here, before any worker starts; a custom pool's class
    is imported only by the worker, which checks it again with the class.
    """
    check_settings(
        builtin_class_of(settings.pool), settings, spell=lambda field: spelled(settings, field)
    )


def spelled(settings: WorkerSettings, field: str) -> str:
    """The option ``field`` as the layer that set it spells it, for error messages (an option
    no layer set is named by its command-line flag)."""
    option, layer = OPTIONS_BY_FIELD[field], settings.sources.get(field, DEFAULT)
    return {
        ENV: option.env_var,
        SETTINGS: f"settings.DJWORKER[{option.settings_key!r}]",
        ADMIN: f"{field_name(field)} of profile {settings.profile_name!r}",
    }.get(layer, option.cli_flag)


def explain(settings: WorkerSettings) -> list[tuple[str, Any, str]]:
    """(field, value, layer) for each configurable field, for banners and the admin."""
    return [
        (o.field, getattr(settings, o.field), settings.sources.get(o.field, DEFAULT))
        for o in OPTIONS
    ]
