"""What the pool-settings form refuses: each error sits on its field and names what is allowed."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from djworker.models import WorkerConfig

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
            "cannot autoscale; use one of threads, prefork",
        ),
        ({"pool": "solo", "concurrency": 4}, "concurrency", "exactly 1 slot; got 4"),
        ({"pool": "fork"}, "pool", "Unknown pool 'fork'; choose one of solo, threads"),
        ({"pool": "no.such.module:Pool"}, "pool", "cannot import pool module 'no.such.module'"),
        (
            {"pool": "tests.contract.broken_pools:NotAPool"},
            "pool",
            "must be a subclass of djworker.concurrency.base.BasePool",
        ),
        ({"pool": "tests.contract.broken_pools:HalfPool"}, "pool", "missing busy, size, stop"),
        (
            {"time_limit": 5.0, "soft_time_limit": 10.0},
            "time_limit",
            "The hard time limit (5.0s) must be above the soft limit (10.0s)",
        ),
    ],
)
def test_a_bad_profile_is_refused_on_the_field_naming_the_allowed_values(
    values: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        WorkerConfig(name="p", **values).full_clean()
    errors = info.value.message_dict
    assert list(errors) == [field], errors
    assert message in errors[field][0]


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"pool": "prefork", "autoscale_min": 3, "autoscale_max": 3, "concurrency": 2},
        {"pool": "solo", "concurrency": 1},
        {"pool": "example_project.pools:ExecutorPool", "time_limit": 10.0},
    ],
)
def test_a_good_profile_is_accepted(values: dict[str, Any]) -> None:
    WorkerConfig(name="p", **values).full_clean()
