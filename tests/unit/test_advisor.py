"""The pool advisor's thresholds and arithmetic, on synthetic task loads."""

from __future__ import annotations

import pytest

from djworker import advisor
from djworker.advisor import Kind, TaskLoad

HOUR_S = 3600.0


@pytest.mark.parametrize(
    ("cpu_s", "runs", "kind"),
    [
        (7.0, 10, Kind.CPU_BOUND),  # share 0.70: the CPU-bound threshold is inclusive
        (6.9, 10, Kind.MIXED),
        (2.1, 10, Kind.MIXED),
        (2.0, 10, Kind.IO_BOUND),  # share 0.20: the I/O-bound threshold is inclusive
        (0.0, 10, Kind.IO_BOUND),
        (12.0, 10, Kind.CPU_BOUND),  # CPU above wall (clock granularity) counts as 1.0
        (10.0, 4, Kind.TOO_FEW_RUNS),  # under MIN_RUNS
    ],
)
def test_a_task_is_classified_by_its_share_of_cpu_time_in_its_wall_time(
    cpu_s: float, runs: int, kind: Kind
) -> None:
    assert advisor.classify(TaskLoad("t", runs, cpu_s, 10.0)) == kind


def test_cpu_bound_and_mixed_tasks_go_to_prefork_with_one_slot_per_core() -> None:
    advice = advisor.advise(
        [
            TaskLoad("resize", 20, 19.0, 20.0),
            TaskLoad("report", 20, 10.0, 20.0),
            TaskLoad("fetch", 20, 0.2, 20.0),
        ],
        window_s=HOUR_S,
        cpu_count=8,
    )
    cpu, io = advice.groups
    assert (cpu.queue, cpu.pool, cpu.concurrency, cpu.tasks) == (
        "cpu",
        "prefork",
        8,
        ("report", "resize"),
    )
    assert (io.queue, io.tasks) == ("io", ("fetch",))
    assert cpu.runworker_line() == "python manage.py runworker -Q cpu --pool prefork -c 8 -n cpu@%h"
    assert advice.routing() == [
        '@djworker.task(queue="cpu")  # report',
        '@djworker.task(queue="cpu")  # resize',
        '@djworker.task(queue="io")  # fetch',
    ]


@pytest.mark.parametrize(
    ("wall_s", "slots", "pool"),
    [
        (60.0, 4, "threads"),  # 0.017 running at once: the minimum of 4 slots
        (5 * HOUR_S, 10, "threads"),  # 5 at once x headroom 2
        (25 * HOUR_S, 50, "threads"),  # 50 slots: still threads
        (25.5 * HOUR_S, 51, "gevent"),  # above 50: greenlets
        (1000 * HOUR_S, 500, "gevent"),  # capped at 500
    ],
)
def test_io_slots_follow_littles_law_with_headroom_and_many_slots_mean_gevent(
    wall_s: float, slots: int, pool: str
) -> None:
    advice = advisor.advise([TaskLoad("fetch", 100, 0.0, wall_s)], window_s=HOUR_S, cpu_count=2)
    (group,) = advice.groups
    assert (group.pool, group.concurrency) == (pool, slots)


def test_no_advice_without_enough_runs_and_queue_names_can_be_chosen() -> None:
    assert advisor.advise([TaskLoad("t", 2, 1.0, 1.0)], window_s=HOUR_S, cpu_count=2).groups == ()
    advice = advisor.advise(
        [TaskLoad("t", 9, 0.0, 9.0)], window_s=HOUR_S, cpu_count=2, io_queue="net"
    )
    assert advice.groups[0].queue == "net"
    assert advice.as_json()["routing"] == ['@djworker.task(queue="net")  # t']
