"""One check of pool settings for every layer, with its lists of pools taken from the registry."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from djworker.concurrency import registry
from djworker.concurrency.capabilities import PoolCapabilities
from djworker.concurrency.prefork import PreforkPool
from djworker.concurrency.settings_check import check_settings, settings_problems
from djworker.concurrency.solo import SoloPool
from djworker.concurrency.threads import ThreadPool
from djworker.exceptions import ConfigurationError


def flag(field: str) -> str:
    return {"autoscale": "--autoscale", "concurrency": "--concurrency"}.get(field, field)


def problems(pool_class: type[PoolCapabilities] | None, **settings: Any) -> list[str]:
    return [p.field for p in settings_problems(pool_class, settings, spell=flag)]


def test_settings_a_pool_can_run_with_pass() -> None:
    check_settings(PreforkPool, {"autoscale": (1, 4), "time_limit_s": 5, "soft_time_limit_s": 4})
    check_settings(SoloPool, {"concurrency": 1, "soft_time_limit_s": 3})
    check_settings(ThreadPool, {"concurrency": 8, "autoscale": None, "max_tasks_per_child": None})


def test_autoscale_on_a_pool_that_cannot_resize_names_the_value_and_the_pools_that_can() -> None:
    with pytest.raises(ConfigurationError) as info:
        check_settings(SoloPool, {"autoscale": (1, 3)}, spell=flag)
    assert str(info.value) == (
        "--autoscale is not available with the solo pool: it cannot change its size while "
        "running; use one of threads, prefork, gevent or eventlet"
    )


def test_a_fixed_size_pool_refuses_any_other_concurrency() -> None:
    with pytest.raises(
        ConfigurationError, match="solo pool has exactly 1 slot; --concurrency must"
    ):
        check_settings(SoloPool, {"concurrency": 3}, spell=flag)


def test_the_time_limit_rule_holds_for_every_pool_even_one_not_imported() -> None:
    assert problems(None, time_limit_s=5, soft_time_limit_s=5) == ["time_limit_s"]
    assert problems(None, time_limit_s=5, soft_time_limit_s=4, autoscale=(1, 2)) == []
    assert problems(PreforkPool, time_limit_s=5, soft_time_limit_s=6) == ["time_limit_s"]


def test_each_rule_reports_on_its_own_field() -> None:
    assert problems(ThreadPool, time_limit_s=2, max_memory_per_child_kib=1024, concurrency=4) == [
        "max_memory_per_child_kib",
        "time_limit_s",
    ]
    assert problems(SoloPool, autoscale=(1, 2), concurrency=2) == ["autoscale", "concurrency"]


def test_the_lists_of_pools_come_from_the_registry_and_the_capability_flags() -> None:
    assert registry.pools_with("supports_autoscale") == ["threads", "prefork", "gevent", "eventlet"]
    assert registry.pools_with("supports_terminate") == ["prefork", "gevent", "eventlet"]
    assert registry.pools_with("supports_recycling") == ["prefork"]
    assert registry.aliases_with("is_green") == ("gevent", "eventlet")
    assert "processes" in registry.aliases_with("supports_autoscale")
    assert registry.alias_names() == "solo, threads, prefork (alias processes), gevent, eventlet"
    assert registry.spoken(["a", "b", "c"]) == "a, b or c"
    assert registry.spoken(["a", "b"], "and") == "a and b"


def test_a_new_alias_appears_in_every_derived_list_without_other_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pools = dict(registry.POOLS, threading=registry.POOLS["threads"])
    monkeypatch.setattr(registry, "POOLS", pools)
    assert registry.alias_names().startswith("solo, threads (alias threading), prefork")
    assert "threading" in registry.aliases_with("supports_autoscale")
    assert registry.pools_with("supports_autoscale").count("threads") == 1


def test_reading_the_green_pools_flags_does_not_import_gevent_or_eventlet() -> None:
    for module in ("gevent", "eventlet"):
        if module in sys.modules:
            pytest.skip(f"{module} was imported by an earlier test")
    assert registry.builtin_class("gevent").is_green
    assert registry.builtin_class("eventlet").supports_terminate
    assert "gevent" not in sys.modules
    assert "eventlet" not in sys.modules
