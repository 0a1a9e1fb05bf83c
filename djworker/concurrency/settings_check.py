"""``check_settings``: whether a pool can run with the given settings, written once.

Every layer asks this one function: the command line and the worker at start-up, settings
resolution (``conf.load_config``), the admin's profile validation, the control plane before it
applies a profile revision, and the pool's own constructor. Each layer passes ``spell``, how it
names a setting to its reader (``--autoscale``, ``DJWORKER_AUTOSCALE``, "autoscale of profile
'x'"), so one rule speaks each layer's language. The lists of pools in the messages come from
the registry and the capability flags.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from djworker.concurrency.capabilities import PoolCapabilities
from djworker.concurrency.registry import pools_with, spoken
from djworker.exceptions import ConfigurationError
from djworker.job import soft_limit_below_hard

#: how a layer names a setting (a ``WorkerSettings`` field) in its messages
Spell = Callable[[str], str]

#: the ``WorkerSettings`` fields these rules read
CHECKED_FIELDS = (
    "concurrency",
    "autoscale",
    "time_limit_s",
    "soft_time_limit_s",
    "max_tasks_per_child",
    "max_memory_per_child_kib",
)


@dataclass(frozen=True)
class SettingProblem:
    """One refused setting: the ``WorkerSettings`` field it is about, and why."""

    field: str
    message: str


def field_name(field: str) -> str:
    """The default spelling: the field's name without its unit."""
    return field.removesuffix("_s").removesuffix("_kib")


def settings_problems(
    pool_class: type[PoolCapabilities] | None, settings: Mapping[str, Any] | object, *, spell: Spell
) -> list[SettingProblem]:
    """Every rule ``settings`` breaks for a ``pool_class`` pool, first the most basic.

    ``settings`` is a ``WorkerSettings`` or a mapping keyed by its fields (missing = unset).
    With ``pool_class`` None (a custom pool not imported here) only the rules that hold for
    every pool are checked.
    """

    def value(field: str) -> Any:
        if isinstance(settings, Mapping):
            return settings.get(field)
        return getattr(settings, field, None)

    problems: list[SettingProblem] = []
    hard, soft = value("time_limit_s"), value("soft_time_limit_s")
    if not soft_limit_below_hard(soft_s=soft, hard_s=hard):
        problems.append(
            SettingProblem(
                "time_limit_s",
                f"the hard time limit ({spell('time_limit_s')} {hard:g} s) must be above the "
                f"soft limit ({spell('soft_time_limit_s')} {soft:g} s): lower the soft limit, "
                "raise the hard one, or unset one",
            )
        )
    if pool_class is None:
        return problems
    pool = pool_class.describe()
    autoscale, concurrency = value("autoscale"), value("concurrency")
    if autoscale and not pool_class.supports_autoscale:
        problems.append(
            SettingProblem(
                "autoscale",
                f"{spell('autoscale')} is not available with the {pool} pool: it cannot change "
                f"its size while running; use one of {spoken(pools_with('supports_autoscale'))}",
            )
        )
    fixed = pool_class.fixed_size
    if fixed is not None and concurrency is not None and concurrency != fixed:
        problems.append(
            SettingProblem(
                "concurrency",
                f"the {pool} pool has exactly {fixed} slot; {spell('concurrency')} must be "
                f"{fixed}, got {concurrency}",
            )
        )
    recycling = [f for f in ("max_tasks_per_child", "max_memory_per_child_kib") if value(f)]
    if recycling and not pool_class.supports_recycling:
        problems.append(
            SettingProblem(
                recycling[0],
                f"the {pool} pool does not recycle its slots; "
                f"{spell('max_tasks_per_child')} and {spell('max_memory_per_child_kib')} need the "
                f"{spoken(pools_with('supports_recycling'))} pool",
            )
        )
    for field, kind, seconds, supported, capability in (
        ("time_limit_s", "hard", hard, pool_class.supports_hard_time_limit, "stop"),
        ("soft_time_limit_s", "soft", soft, pool_class.supports_soft_time_limit, "interrupt"),
    ):
        if seconds is not None and not supported:
            enforced = [name for name, yes in pool_class.limits().items() if yes]
            flag = f"supports_{kind}_time_limit"
            problems.append(
                SettingProblem(
                    field,
                    f"the {pool} pool cannot enforce a {kind} time limit ({spell(field)} "
                    f"{seconds:g} s); it enforces {', '.join(enforced) or 'no limit'}: unset it, "
                    f"or use a pool that enforces it ({spoken(pools_with(flag))} {capability} a "
                    f"task at its {kind} limit)",
                )
            )
    return problems


def check_settings(
    pool_class: type[PoolCapabilities] | None,
    settings: Mapping[str, Any] | object,
    *,
    spell: Spell = field_name,
) -> None:
    """Raise ``ConfigurationError`` with the first problem ``settings_problems`` finds."""
    problems = settings_problems(pool_class, settings, spell=spell)
    if problems:
        raise ConfigurationError(problems[0].message)
