"""djworker's performance targets, and how a comparison's figures stand against each one.

The summary under the tables gives each target's median (over the repeats) per pool and says
whether it meets the target, so a change that moves a figure across its line shows at once.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from benchmarks.compare.figures import ratios, values
from benchmarks.compare.implementations import POOLS

Record = dict[str, Any]


@dataclass(frozen=True)
class Target:
    text: str
    #: an implementation; for a ratio of no-op tasks/s, the numerator
    name: str
    #: the metric of ``name``, or for a ratio the denominator's implementation
    metric: str
    at_least: float | None = None
    at_most: float | None = None
    #: pools it applies to; None: the figure does not depend on the pool
    pools: tuple[str, ...] | None = tuple(POOLS)
    ratio: bool = False
    #: the denominator's only pool, when it has one only
    denominator_pool: str | None = None

    def figures(self, records: list[Record], pool: str | None) -> list[float]:
        if pool is None:
            return values(records, self.name, None, self.metric)
        if self.ratio:
            return ratios(
                records, self.name, self.metric, pool, "tasks_per_s", self.denominator_pool
            )
        return values(records, self.name, pool, self.metric)

    def met(self, figure: float) -> bool:
        return (self.at_least is None or figure >= self.at_least) and (
            self.at_most is None or figure <= self.at_most
        )

    @property
    def limit(self) -> str:
        unit = "\u00d7" if self.ratio else ""
        if self.at_least is not None:
            return f"\u2265 {self.at_least:,g}{unit}"
        return f"\u2264 {self.at_most:,g}{unit}"


TARGETS = (
    Target("no-op tasks/s, djworker on Redis ÷ Celery", "djworker-redis", "celery", 3, ratio=True),
    Target("no-op tasks/s, djworker on django:// ÷ Celery", "djworker-db", "celery", 3, ratio=True),
    Target("no-op tasks/s, django:// ÷ huey", "djworker-db", "huey", 1.5, ratio=True),
    Target(
        "no-op tasks/s, django:// ÷ django-tasks-db (solo)",
        "djworker-db",
        "django-tasks-db",
        5,
        ratio=True,
        denominator_pool="solo",
    ),
    Target("idle pick-up p50 on django://, ms", "djworker-db", "probe_p50_ms", at_most=3),
    Target(
        "PostgreSQL sessions opened per no-op on django://, while draining",
        "djworker-db",
        "pg_sessions_per_task",
        at_most=0.01,
    ),
    Target(".delay() calls/s, django://", "djworker-db", "delay_calls_per_s", 2000, pools=None),
    Target(".delay() calls/s, Redis", "djworker-redis", "delay_calls_per_s", 2000, pools=None),
    Target("bulk publish tasks/s, Redis", "djworker-redis", "bulk_tasks_per_s", 10_000, pools=None),
    Target("bulk publish tasks/s, django://", "djworker-db", "bulk_tasks_per_s", 5_000, pools=None),
    Target(
        "no-op tasks/s, django.tasks ÷ @djworker.task",
        "djworker-django-tasks",
        "djworker-db",
        0.9,
        pools=("threads",),
        ratio=True,
    ),
)


def summary(records: list[Record]) -> str:
    """One line per target with a figure in ``records``: each pool's median, met or missed."""
    lines = []
    for target in TARGETS:
        cells = []
        for pool in target.pools or (None,):
            found = target.figures(records, pool)
            if not found:
                continue
            middle = statistics.median(found)
            shown = f"{middle:.3g}" if middle < 10 else f"{middle:,.0f}"
            unit = "\u00d7" if target.ratio else ""
            verdict = "met" if target.met(middle) else "**missed**"
            cells.append(f"{pool + ' ' if pool else ''}{shown}{unit} {verdict}")
        if cells:
            lines.append(f"- {target.text} {target.limit}: {', '.join(cells)}")
    if not lines:
        return "**Against djworker's targets**: no figure to compare"
    return "**Against djworker's targets** (medians over the repeats)\n\n" + "\n".join(lines)
