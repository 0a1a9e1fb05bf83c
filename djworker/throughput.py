"""Tasks finished and failed per minute over the last hour, and the chart the dashboard draws.

One grouped query over ``TaskResult.finished_at`` (indexed) gives the counts; the chart is an
SVG written here on the server, so the admin fetches no script or font from anywhere. Every
label in it is a number or a time, and the few strings are escaped all the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connections
from django.db.models import CharField, Count, F, Func, Value
from django.db.models.functions import TruncMinute
from django.utils import timezone
from django.utils.html import escape

from djworker.models import TaskResult, TaskStatus

#: minutes shown in the chart
WINDOW_MINUTES = 60
WIDTH, HEIGHT = 720, 180
MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP = 40, 22, 10
FINISHED_COLOUR, FAILED_COLOUR = "#2e7d32", "#c62828"


@dataclass(frozen=True)
class Series:
    """Per-minute counts, oldest first; ``start`` is the first minute."""

    start: datetime
    finished: tuple[int, ...]
    failed: tuple[int, ...]

    @property
    def total_finished(self) -> int:
        return sum(self.finished)

    @property
    def total_failed(self) -> int:
        return sum(self.failed)

    def as_json(self) -> dict[str, object]:
        return {
            "start": self.start.isoformat(),
            "minutes": len(self.finished),
            "finished_per_minute": list(self.finished),
            "failed_per_minute": list(self.failed),
            "finished_total": self.total_finished,
            "failed_total": self.total_failed,
        }


def per_minute(*, now: datetime | None = None, minutes: int = WINDOW_MINUTES) -> Series:
    """Tasks that finished (any outcome) and failed in each of the last ``minutes`` minutes."""
    now = now or timezone.now()
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes - 1)
    finished = [0] * minutes
    failed = [0] * minutes
    rows = (
        TaskResult.objects.filter(finished_at__gte=start)
        .annotate(minute=_minute_of("finished_at"))
        .values("minute", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for row in rows:
        minute = row["minute"]
        if isinstance(minute, str):  # SQLite: "YYYY-MM-DD HH:MM" in UTC
            minute = datetime.fromisoformat(minute).replace(tzinfo=UTC)
        index = int((minute - start).total_seconds() // 60)
        if not 0 <= index < minutes:
            continue
        finished[index] += row["n"]
        if row["status"] == TaskStatus.FAILED:
            failed[index] += row["n"]
    return Series(start=start, finished=tuple(finished), failed=tuple(failed))


def _minute_of(field: str) -> Func:
    """The minute of a datetime column, worked out by the database.

    On SQLite, Django's ``TruncMinute`` calls a Python function for every row (0.8 s over
    100,000 rows); the built-in ``strftime`` gives the same minute, as text, in a few ms.
    """
    if connections[TaskResult.objects.db].vendor == "sqlite":
        return Func(
            Value("%Y-%m-%d %H:%M"), F(field), function="strftime", output_field=CharField()
        )
    return TruncMinute(field)


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... at or above ``value`` (the chart's top)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def svg(series: Series) -> str:
    """The chart: finished (green) and failed (red) per minute, as one inline SVG element."""
    minutes = len(series.finished)
    top = _nice_ceiling(max(max(series.finished, default=0), 1))
    plot_w = WIDTH - MARGIN_LEFT - 8
    plot_h = HEIGHT - MARGIN_BOTTOM - MARGIN_TOP

    def point(index: int, value: int) -> str:
        x = MARGIN_LEFT + plot_w * index / max(minutes - 1, 1)
        y = MARGIN_TOP + plot_h * (1 - value / top)
        return f"{x:.1f},{y:.1f}"

    def line(values: tuple[int, ...], colour: str, name: str) -> str:
        points = " ".join(point(i, v) for i, v in enumerate(values))
        return (
            f'<polyline class="series-{name}" fill="none" stroke="{colour}" stroke-width="2" '
            f'points="{points}"/>'
        )

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" style="max-width:100%;height:auto" role="img" '
        'aria-label="tasks finished and failed per minute">',
        f"<title>{escape(_title(series))}</title>",
    ]
    for fraction in (0, 0.5, 1):
        y = MARGIN_TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#ddd"/>'
            f'<text x="{MARGIN_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
            f"{top * fraction:g}</text>"
        )
    for minutes_ago in (60, 45, 30, 15, 0):
        index = minutes - 1 - minutes_ago
        if 0 <= index < minutes or minutes_ago == minutes:
            x = MARGIN_LEFT + plot_w * max(index, 0) / max(minutes - 1, 1)
            label = "now" if minutes_ago == 0 else f"-{minutes_ago} min"
            anchor = "end" if minutes_ago == 0 else "middle"
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}" font-size="11">'
                f"{label}</text>"
            )
    parts.append(line(series.finished, FINISHED_COLOUR, "finished"))
    parts.append(line(series.failed, FAILED_COLOUR, "failed"))
    parts.append("</svg>")
    return "".join(parts)


def _title(series: Series) -> str:
    return (
        f"last {len(series.finished)} minutes: {series.total_finished} finished, "
        f"{series.total_failed} failed"
    )
