"""The comparison runner's pure logic: the interleaved order of runs and the paired ratios.

No worker, no service: these run everywhere, with or without the bench extra.
"""

from __future__ import annotations

import pytest

from benchmarks.compare import report, targets
from benchmarks.compare.__main__ import parse, plan


def record(name: str, pool: str, repeat: int, tasks_per_s: float, status: str = "ok") -> dict:
    return {
        "run": f"r{repeat}-{name}-{pool}",
        "implementation": name,
        "pool": pool,
        "repeat": repeat,
        "status": status,
        "tasks_per_s": tasks_per_s,
        "load1": 1.0,
        "broker": "redis",
    }


def test_each_cell_alternates_which_implementation_runs_first_from_repeat_to_repeat() -> None:
    args = parse(
        ["--only", "djworker-redis,celery", "--pools", "threads,gevent", "--brokers", "redis"]
    )

    order = [(repeat, implementation.name, pool) for repeat, implementation, pool in plan(args)]

    assert order == [
        (1, "djworker-redis", "threads"),
        (1, "celery", "threads"),
        (1, "djworker-redis", "gevent"),
        (1, "celery", "gevent"),
        (2, "celery", "threads"),
        (2, "djworker-redis", "threads"),
        (2, "celery", "gevent"),
        (2, "djworker-redis", "gevent"),
        (3, "djworker-redis", "threads"),
        (3, "celery", "threads"),
        (3, "djworker-redis", "gevent"),
        (3, "celery", "gevent"),
    ]


def test_a_peer_runs_only_on_the_pools_it_has() -> None:
    args = parse(
        ["--only", "djworker-db,django-tasks-db", "--repeats", "1", "--brokers", "database"]
    )

    cells = [(implementation.name, pool) for _, implementation, pool in plan(args)]

    assert ("django-tasks-db", "solo") in cells
    assert [pool for name, pool in cells if name == "django-tasks-db"] == ["solo"]
    assert [pool for name, pool in cells if name == "djworker-db"] == [
        "solo",
        "threads",
        "prefork",
        "gevent",
    ]


def test_ratios_pair_the_runs_of_one_repeat_and_leave_out_failed_runs() -> None:
    records = [
        record("djworker-redis", "threads", 1, 900),
        record("celery", "threads", 1, 300),
        record("djworker-redis", "threads", 2, 400),  # a slow moment hits both runs of repeat 2
        record("celery", "threads", 2, 100),
        record("djworker-redis", "threads", 3, 1000),
        record("celery", "threads", 3, 0, status="failed"),
        record("celery", "gevent", 1, 50),
    ]

    found = report.ratios(records, "djworker-redis", "celery", "threads", "tasks_per_s")

    assert sorted(found) == [3.0, 4.0]  # not 900/100 or 400/300: each repeat with itself
    assert report.spread(found, 1) == "3.5 (3.0\u20134.0)"
    assert report.spread(report.values(records, "celery", "threads", "tasks_per_s")) == (
        "200 (100\u2013300)"
    )


@pytest.mark.parametrize(
    ("found", "shown"), [([], "\u2014"), ([2.0], "2"), ([1.0, 2.0, 9.0], "2 (1\u20139)")]
)
def test_spread_shows_the_median_and_the_range(found: list[float], shown: str) -> None:
    assert report.spread(found) == shown


def test_the_targets_summary_says_which_pool_meets_its_target() -> None:
    records = [
        record("djworker-redis", "threads", 1, 900),
        record("celery", "threads", 1, 300),
        record("djworker-redis", "gevent", 1, 200),
        record("celery", "gevent", 1, 100),
    ]

    lines = targets.summary(records).splitlines()

    assert (
        "- no-op tasks/s, djworker on Redis \u00f7 Celery \u2265 3\u00d7:"
        " threads 3\u00d7 met, gevent 2\u00d7 **missed**"
    ) in lines
    assert not any("huey" in line for line in lines)  # no figure, no line
