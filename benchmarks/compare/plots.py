"""The comparison's PNGs: no-op tasks/s per pool, and pick-up latency p50/p99 per pool.

One panel per broker group; one bar per implementation and pool at the median of the repeats,
its whisker spanning min to max.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from benchmarks.compare.implementations import BROKERS, BY_NAME, POOLS

TITLES = {"redis": "Redis broker", "database": "PostgreSQL as the broker"}


def draw(records: list[dict[str, Any]], out: Path) -> list[Path]:
    ok = [r for r in records if r["status"] == "ok"]
    brokers = [b for b in BROKERS if any(r["broker"] == b for r in ok)]
    if not brokers:
        return []
    written = []
    for filename, metrics, ylabel, log in (
        ("throughput.png", ("tasks_per_s",), "no-op tasks/s (results stored)", False),
        (
            "latency.png",
            ("probe_p50_ms", "probe_p99_ms"),
            "call to start, ms (p50 solid, p99 pale)",
            True,
        ),
    ):
        figure, axes = plt.subplots(
            1, len(brokers), figsize=(6.5 * len(brokers), 4.2), squeeze=False
        )
        for axis, broker in zip(axes[0], brokers, strict=True):
            _panel(axis, [r for r in ok if r["broker"] == broker], metrics, ylabel, log)
            axis.set_title(TITLES[broker])
        figure.tight_layout()
        path = out / filename
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written


def _panel(
    axis: Any, records: list[dict[str, Any]], metrics: tuple[str, ...], ylabel: str, log: bool
) -> None:
    names = [n for n in BY_NAME if any(r["implementation"] == n for r in records)]
    pools = [p for p in POOLS if any(r["pool"] == p for r in records)]
    labelled: set[str] = set()
    for position, pool in enumerate(pools):
        here = [
            n for n in names if any(r["implementation"] == n and r["pool"] == pool for r in records)
        ]
        width = 0.8 / max(len(here), 1)
        for slot, name in enumerate(here):
            x = position - 0.4 + width * (slot + 0.5)
            colour = f"C{names.index(name)}"
            # p99 first and pale, so the solid p50 drawn over it stays visible below it
            for metric in reversed(metrics):
                found = [
                    r[metric]
                    for r in records
                    if r["implementation"] == name and r["pool"] == pool and r.get(metric)
                ]
                if not found:
                    continue
                middle = statistics.median(found)
                upper = metric.endswith("p99_ms")
                axis.bar(
                    x,
                    middle,
                    width * 0.9,
                    yerr=[[middle - min(found)], [max(found) - middle]],
                    capsize=3,
                    color=colour,
                    alpha=0.35 if upper else 1.0,
                    hatch="//" if upper else None,
                    label=None if upper or name in labelled else BY_NAME[name].label,
                )
                if not upper:
                    labelled.add(name)
    axis.set_xticks(range(len(pools)), pools)
    axis.set_ylabel(ylabel)
    if log:
        axis.set_yscale("log")
    axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
