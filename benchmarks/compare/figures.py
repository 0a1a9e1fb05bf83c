"""The figures of a comparison's records: one metric's values, paired ratios, their spread.

A ratio pairs runs of the same repeat (which ran back to back), so it is the median and the
range of the per-repeat ratios, not a ratio of medians.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

Record = dict[str, Any]
#: the range dash and "no value" dash of the tables, spelled out for the linters
RANGE, NONE = "\u2013", "\u2014"


def spread(values: Iterable[float], digits: int = 0) -> str:
    """``median (min-max)`` (an en dash in the table), or an em dash for no value."""
    values = sorted(values)
    if not values:
        return NONE
    shown = f"{{:,.{digits}f}}"
    middle = shown.format(statistics.median(values))
    if len(values) == 1:
        return middle
    return f"{middle} ({shown.format(values[0])}{RANGE}{shown.format(values[-1])})"


def values(records: list[Record], name: str, pool: str | None, metric: str) -> list[float]:
    return [
        r[metric]
        for r in records
        if r["implementation"] == name
        and (pool is None or r["pool"] == pool)
        and r["status"] == "ok"
        and r.get(metric) is not None
    ]


def ratios(
    records: list[Record],
    numerator: str,
    denominator: str,
    pool: str,
    metric: str,
    denominator_pool: str | None = None,
) -> list[float]:
    """``numerator / denominator`` of ``metric`` within each repeat where both runs succeeded.

    ``denominator_pool`` compares against another pool of the denominator (a peer that has
    only one pool); by default the same pool.
    """
    wanted = {(numerator, pool), (denominator, denominator_pool or pool)}
    by_repeat: dict[int, dict[str, float]] = {}
    for r in records:
        if (r["implementation"], r["pool"]) in wanted and r["status"] == "ok" and r.get(metric):
            by_repeat.setdefault(r["repeat"], {})[r["implementation"]] = r[metric]
    return [
        pair[numerator] / pair[denominator]
        for pair in by_repeat.values()
        if numerator in pair and denominator in pair
    ]
