"""The pool advisor: which pool and how many slots suit each task, from what its runs cost.

Every result row records the CPU time and the wall time of its run. Over a window, a task whose
runs spend most of their wall time on the CPU is **CPU-bound**; one whose runs mostly wait
(network, disk, sleep, locks) is **I/O-bound**; in between is **mixed**. The thresholds are the
constants below, documented in docs/pools.md and tested on synthetic rows:

* ``cpu share = CPU seconds / wall seconds`` over the window's runs of the task;
* ``cpu share >= CPU_BOUND_SHARE`` (0.7): CPU-bound; ``<= IO_BOUND_SHARE`` (0.2): I/O-bound;
* fewer than ``MIN_RUNS`` (5) runs: too few to tell, left out of the advice.

A run waiting for a core counts as wall time, so on a saturated host a CPU-bound task's share
drops (0.27 for a pure CPU loop measured at a load of 7.5 on 2 cores): the I/O-bound
threshold is low, and a task between the two goes with the CPU-bound ones.

The advice puts the tasks on two queues served by two workers:

* CPU-bound and mixed tasks on ``prefork`` with one slot per core (a process per slot copes with
  the waits of a mixed task; a green pool would stall on its CPU part);
* I/O-bound tasks on ``gevent`` when they need more than ``GREEN_ABOVE_SLOTS`` (50) slots,
  else ``threads``. Slots needed follow Little's law: the wall seconds the tasks spent in the
  window divided by the window is the mean number running at once; times ``HEADROOM`` (2) for
  bursts, at least ``MIN_IO_SLOTS`` (4), at most ``MAX_IO_SLOTS`` (500).

Pure logic: ``loads_from_results`` reads the rows, everything else works on plain values.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

CPU_BOUND_SHARE = 0.7
IO_BOUND_SHARE = 0.2
MIN_RUNS = 5
GREEN_ABOVE_SLOTS = 50
HEADROOM = 2.0
MIN_IO_SLOTS = 4
MAX_IO_SLOTS = 500
DEFAULT_WINDOW_MINUTES = 60
CPU_QUEUE, IO_QUEUE = "cpu", "io"


class Kind(enum.StrEnum):
    CPU_BOUND = "CPU-bound"
    IO_BOUND = "I/O-bound"
    MIXED = "mixed"
    TOO_FEW_RUNS = "too few runs"


@dataclass(frozen=True)
class TaskLoad:
    """What one task's runs cost over the window."""

    task_name: str
    runs: int
    cpu_s: float
    wall_s: float

    @property
    def cpu_share(self) -> float:
        return min(self.cpu_s / self.wall_s, 1.0) if self.wall_s > 0 else 0.0

    @property
    def mean_wall_s(self) -> float:
        return self.wall_s / self.runs if self.runs else 0.0

    @property
    def mean_cpu_s(self) -> float:
        return self.cpu_s / self.runs if self.runs else 0.0


def classify(load: TaskLoad) -> Kind:
    if load.runs < MIN_RUNS or load.wall_s <= 0:
        return Kind.TOO_FEW_RUNS
    if load.cpu_share >= CPU_BOUND_SHARE:
        return Kind.CPU_BOUND
    if load.cpu_share <= IO_BOUND_SHARE:
        return Kind.IO_BOUND
    return Kind.MIXED


@dataclass(frozen=True)
class Group:
    """One worker of the advice: its queue, pool, size and the tasks routed to it."""

    queue: str
    pool: str
    concurrency: int
    tasks: tuple[str, ...]
    why: str

    def runworker_line(self) -> str:
        return (
            f"python manage.py runworker -Q {self.queue} --pool {self.pool} "
            f"-c {self.concurrency} -n {self.queue}@%h"
        )

    def profile_line(self) -> str:
        return f"python manage.py runworker --profile {self.queue}"


@dataclass(frozen=True)
class Advice:
    window_s: float
    cpu_count: int
    tasks: tuple[tuple[TaskLoad, Kind], ...]
    groups: tuple[Group, ...] = field(default=())

    def routing(self) -> list[str]:
        """The task options that put each task on its group's queue."""
        return [
            f'@djworker.task(queue="{group.queue}")  # {name}'
            for group in self.groups
            for name in group.tasks
        ]

    def as_json(self) -> dict[str, object]:
        return {
            "window_s": self.window_s,
            "cpu_count": self.cpu_count,
            "tasks": [
                {
                    "task_name": load.task_name,
                    "runs": load.runs,
                    "mean_wall_s": round(load.mean_wall_s, 4),
                    "mean_cpu_s": round(load.mean_cpu_s, 4),
                    "cpu_share": round(load.cpu_share, 3),
                    "kind": str(kind),
                }
                for load, kind in self.tasks
            ],
            "groups": [
                {
                    "queue": g.queue,
                    "pool": g.pool,
                    "concurrency": g.concurrency,
                    "tasks": list(g.tasks),
                    "why": g.why,
                    "runworker": g.runworker_line(),
                }
                for g in self.groups
            ],
            "routing": self.routing(),
        }


def io_slots(loads: Iterable[TaskLoad], window_s: float) -> int:
    """Slots for I/O-bound tasks: mean number running at once (Little's law) with headroom."""
    busy = sum(load.wall_s for load in loads) / window_s if window_s > 0 else 0.0
    return max(MIN_IO_SLOTS, min(MAX_IO_SLOTS, math.ceil(busy * HEADROOM)))


def advise(
    loads: Iterable[TaskLoad],
    *,
    window_s: float,
    cpu_count: int,
    cpu_queue: str = CPU_QUEUE,
    io_queue: str = IO_QUEUE,
) -> Advice:
    classified = tuple(
        sorted(((load, classify(load)) for load in loads), key=lambda pair: pair[0].task_name)
    )
    cpu = [load for load, kind in classified if kind in (Kind.CPU_BOUND, Kind.MIXED)]
    io = [load for load, kind in classified if kind == Kind.IO_BOUND]
    groups = []
    if cpu:
        groups.append(
            Group(
                queue=cpu_queue,
                pool="prefork",
                concurrency=max(1, cpu_count),
                tasks=tuple(load.task_name for load in cpu),
                why=f"CPU-bound or mixed (CPU share above {IO_BOUND_SHARE:g}): one process "
                f"per core ({cpu_count}) runs them in parallel despite the GIL",
            )
        )
    if io:
        slots = io_slots(io, window_s)
        pool = "gevent" if slots > GREEN_ABOVE_SLOTS else "threads"
        groups.append(
            Group(
                queue=io_queue,
                pool=pool,
                concurrency=slots,
                tasks=tuple(load.task_name for load in io),
                why=f"I/O-bound (CPU share at most {IO_BOUND_SHARE:g}): they wait, so slots are "
                f"cheap; {slots} slots = {HEADROOM:g} x the mean number running at once"
                + (
                    f", more than {GREEN_ABOVE_SLOTS}, so greenlets"
                    if pool == "gevent"
                    else f", at most {GREEN_ABOVE_SLOTS}, so threads"
                ),
            )
        )
    return Advice(window_s=window_s, cpu_count=cpu_count, tasks=classified, groups=tuple(groups))


def loads_from_results(*, since: datetime) -> list[TaskLoad]:
    """Per task name: runs finished since ``since`` that recorded their CPU and wall time."""
    from django.db.models import Count, Sum

    from djworker.models import TaskResult

    rows = (
        TaskResult.objects.filter(
            finished_at__gte=since, cpu_time_s__isnull=False, wall_time_s__isnull=False
        )
        .values("task_name")
        .annotate(runs=Count("id"), cpu=Sum("cpu_time_s"), wall=Sum("wall_time_s"))
        .order_by("task_name")
    )
    return [
        TaskLoad(row["task_name"], row["runs"], float(row["cpu"] or 0), float(row["wall"] or 0))
        for row in rows
    ]


def advise_from_results(
    *,
    window_minutes: float,
    cpu_count: int,
    now: datetime | None = None,
    cpu_queue: str = CPU_QUEUE,
    io_queue: str = IO_QUEUE,
) -> Advice:
    """The advice for the runs finished in the last ``window_minutes``."""
    from django.utils import timezone

    now = now or timezone.now()
    window = timedelta(minutes=window_minutes)
    return advise(
        loads_from_results(since=now - window),
        window_s=window.total_seconds(),
        cpu_count=cpu_count,
        cpu_queue=cpu_queue,
        io_queue=io_queue,
    )


def create_profiles(advice: Advice) -> list[str]:
    """Create or update one profile per group (named after its queue); their names."""
    from djworker.models import WorkerProfile

    names = []
    for group in advice.groups:
        profile = WorkerProfile.objects.filter(name=group.queue).first() or WorkerProfile(
            name=group.queue
        )
        profile.pool, profile.concurrency, profile.queues = (
            group.pool,
            group.concurrency,
            group.queue,
        )
        profile.full_clean()
        profile.save()
        names.append(profile.name)
    return names
