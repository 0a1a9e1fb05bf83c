"""What the pool-settings form refuses: each error sits on its field and names what is allowed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import override_settings

from djworker.models import WorkerProfile

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"concurrency": 0}, "concurrency", "Must be a positive whole number (1 or more); got 0"),
        ({"autoscale_min": -1, "autoscale_max": 3}, "autoscale_min", "got -1"),
        ({"max_tasks_per_child": 0}, "max_tasks_per_child", "1 or more"),
        ({"time_limit": 0.0}, "time_limit", "Must be a positive number of seconds; got 0.0"),
        ({"prefetch_multiplier": -2}, "prefetch_multiplier", "Must be 0 (no limit) or more"),
        ({"autoscale_min": 4, "autoscale_max": 2}, "autoscale_min", "allowed: 1 to 2"),
        ({"autoscale_min": 1}, "autoscale_max", "Set both autoscale bounds, or neither"),
        (
            {"pool": "solo", "autoscale_min": 1, "autoscale_max": 3},
            "pool",
            "Autoscale is not available with the solo pool: it cannot change its size while "
            "running; use one of threads, prefork, gevent or eventlet.",
        ),
        (
            {"pool": "solo", "concurrency": 4},
            "concurrency",
            "The solo pool has exactly 1 slot; concurrency must be 1, got 4.",
        ),
        ({"pool": "fork"}, "pool", "Unknown pool 'fork'; choose one of solo, threads"),
        (
            {"pool": "no.such.module:Pool"},
            "pool",
            "Pool 'no.such.module:Pool' is not one of the custom pools a profile may name "
            "(settings.DJWORKER['CUSTOM_POOLS']: none).",
        ),
        (
            {"concurrency": 1001},
            "concurrency",
            "At most 1000, the maximum pool size (settings.DJWORKER['MAX_CONCURRENCY']); got 1001.",
        ),
        ({"autoscale_min": 1, "autoscale_max": 5000}, "autoscale_max", "At most 1000"),
        (
            {"queues": "a" * 300},
            "queues",
            "queues expects comma-separated queue names; queue names have at most 200 characters",
        ),
        ({"queues": "mail,<script>"}, "queues", "letters, digits, '_', '.', ':' or '-'"),
        (
            {"time_limit": 5.0, "soft_time_limit": 10.0},
            "time_limit",
            "The hard time limit (time_limit 5 s) must be above the soft limit "
            "(soft_time_limit 10 s)",
        ),
    ],
)
def test_a_bad_profile_is_refused_on_the_field_naming_the_allowed_values(
    values: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        WorkerProfile(name="p", **values).full_clean()
    errors = info.value.message_dict
    assert list(errors) == [field], errors
    assert message in errors[field][0]


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"pool": "prefork", "autoscale_min": 3, "autoscale_max": 3, "concurrency": 2},
        {"pool": "solo", "concurrency": 1},
        {"concurrency": 1000, "queues": "mail, default"},
        {"max_deliveries": 0},
        {"max_deliveries": 10},
    ],
)
def test_a_good_profile_is_accepted(values: dict[str, Any]) -> None:
    WorkerProfile(name="p", **values).full_clean()


@override_settings(DJWORKER={"CUSTOM_POOLS": ["example_project.pools:ExecutorPool"]})
def test_an_allow_listed_custom_pool_is_accepted() -> None:
    WorkerProfile(name="p", pool="example_project.pools:ExecutorPool").full_clean()


@override_settings(DJWORKER={"MAX_CONCURRENCY": 4000})
def test_the_size_bound_follows_the_setting() -> None:
    WorkerProfile(name="p", concurrency=4000).full_clean()


def test_validating_a_pool_never_imports_the_module_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    monkeypatch.setenv("DJWORKER_IMPORT_CANARY", str(marker))
    path = "tests.taskapp.exits_on_import:Pool"
    with pytest.raises(ValidationError, match="is not one of the custom pools"):
        WorkerProfile(name="p", pool=path).full_clean()
    # Even an allow-listed class is not imported by the web process: the worker checks it.
    with override_settings(DJWORKER={"CUSTOM_POOLS": [path]}):
        WorkerProfile(name="p", pool=path).full_clean()
    assert not marker.exists()
    assert "tests.taskapp.exits_on_import" not in sys.modules
