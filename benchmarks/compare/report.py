"""The Markdown tables of a comparison: figures as median (min-max) over the repeats, and ratios."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.compare import targets
from benchmarks.compare.figures import NONE, RANGE, ratios, spread, values
from benchmarks.compare.implementations import (
    BY_NAME,
    DJWORKER_DATABASE,
    DJWORKER_DJANGO_TASKS,
    POOLS,
    REFERENCE,
)

Record = dict[str, Any]
#: the "times" sign of a ratio, spelled out for the linters
TIMES = "\u00d7"
TITLES = {"redis": "Redis broker", "database": "PostgreSQL as the broker"}


def one_line(record: Record) -> str:
    head = f"{record['implementation']:<22} {record['pool']:<8} repeat {record['repeat']}"
    if record["status"] != "ok":
        return f"{head}: FAILED {record.get('failure', '')}"
    return (
        f"{head}: {record.get('tasks_per_s', '?')} tasks/s,"
        f" p50 {record.get('probe_p50_ms', '?')} ms, p99 {record.get('probe_p99_ms', '?')} ms,"
        f" .delay() {record.get('delay_calls_per_s', '?')}/s, load {record['load1']}"
    )


def markdown(records: list[Record], meta: dict[str, Any]) -> str:
    present = [name for name in BY_NAME if any(r["implementation"] == name for r in records)]
    parts = [_header(records, meta)]
    for broker, reference in REFERENCE.items():
        peers = [
            n
            for n in present
            if BY_NAME[n].broker == broker and n not in (reference.name, DJWORKER_DJANGO_TASKS.name)
        ]
        if reference.name not in present and not peers:
            continue
        names = [n for n in (reference.name, *peers) if n in present]
        parts.append(_metric_table(records, broker, names, reference.name, peers))
        parts.append(_latency_table(records, broker, names))
    parts.append(_publish_table(records, present))
    if DJWORKER_DJANGO_TASKS.name in present:
        parts.append(_django_tasks_table(records))
    parts.append(targets.summary(records))
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        parts.append(
            "**Failed runs** (not in the figures above):\n\n"
            + "\n".join(f"- `{r['run']}`: {r.get('failure')}" for r in failed)
        )
    return "\n\n".join(parts) + "\n"


def _header(records: list[Record], meta: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items() if v)
    loads = [r["load1"] for r in records]
    load = f"{min(loads)}{RANGE}{max(loads)}" if loads else "?"
    return (
        f"Run of {meta.get('started_at', '?')}: {meta.get('repeats')} repeat(s),"
        f" {meta.get('tasks')} no-ops and {meta.get('probes')} probes at"
        f" {meta.get('probe_rate'):.0f}/s per run, results stored in PostgreSQL,"
        f" `CONN_MAX_AGE=0`; {meta.get('cpus')} CPUs, load average {load} during the runs;"
        f" {versions}; djworker at {meta.get('djworker_commit') or '?'}."
        f" Figures: median (min{RANGE}max) over the repeats; a ratio is taken within"
        " each repeat, then the same."
    )


def _metric_table(
    records: list[Record], broker: str, names: list[str], reference: str, peers: list[str]
) -> str:
    head = ["pool", *(BY_NAME[n].label for n in names)]
    head += [f"{reference} ÷ {p}" for p in peers]
    rows = [_row(head), _row(["---"] * len(head))]
    cpu_rows = [
        _row(["pool", *(BY_NAME[n].label for n in names)]),
        _row(["---"] * (len(names) + 1)),
    ]
    for pool in POOLS:
        cells = [spread(values(records, n, pool, "tasks_per_s")) for n in names]
        if all(cell == NONE for cell in cells):
            continue
        cells += [_ratio(ratios(records, reference, p, pool, "tasks_per_s")) for p in peers]
        rows.append(_row([pool, *cells]))
        cpu = [
            f"{spread(values(records, n, pool, 'worker_cpu_ms_per_task'), 2)}"
            f" / {spread(values(records, n, pool, 'pg_sessions_per_task'), 3)}"
            for n in names
        ]
        cpu_rows.append(_row([pool, *cpu]))
    return (
        f"**No-op tasks/s, {TITLES[broker]}**\n\n"
        + "\n".join(rows)
        + f"\n\n**Worker CPU ms / PostgreSQL sessions opened, per no-op, {TITLES[broker]}**"
        " (CPU: user + system time of the worker and its pool processes while it drained,"
        " steadier than tasks/s on a busy machine; sessions: opened in the implementation's"
        " database over the same span)\n\n" + "\n".join(cpu_rows)
    )


def _latency_table(records: list[Record], broker: str, names: list[str]) -> str:
    head = ["pool", *(f"{BY_NAME[n].label} p50 / p99 ms" for n in names)]
    rows = [_row(head), _row(["---"] * len(head))]
    for pool in POOLS:
        cells = [
            f"{spread(values(records, n, pool, 'probe_p50_ms'), 1)}"
            f" / {spread(values(records, n, pool, 'probe_p99_ms'), 1)}"
            for n in names
        ]
        if all(cell == f"{NONE} / {NONE}" for cell in cells):
            continue
        rows.append(_row([pool, *cells]))
    return (
        f"**Idle pick-up latency, {TITLES[broker]}** (call to task start, probes paced into an idle"
        " worker)\n\n" + "\n".join(rows)
    )


def _publish_table(records: list[Record], present: list[str]) -> str:
    rows = [
        _row(["implementation", "one call at a time, calls/s", "bulk publish, tasks/s"]),
        _row(["---"] * 3),
    ]
    for name in present:
        bulk = values(records, name, None, "bulk_tasks_per_s")
        rows.append(
            _row(
                [
                    BY_NAME[name].label,
                    spread(values(records, name, None, "delay_calls_per_s")),
                    spread(bulk) if bulk else "no bulk API",
                ]
            )
        )
    return (
        "**Publishing from one process** (every run's backlog; each call stores what the"
        " implementation stores at publish time)\n\n" + "\n".join(rows)
    )


def _django_tasks_table(records: list[Record]) -> str:
    native, framework = DJWORKER_DATABASE.name, DJWORKER_DJANGO_TASKS.name
    rows = [
        _row(
            [
                "pool",
                "@djworker.task",
                "django.tasks",
                "django.tasks ÷ @djworker.task",
                "worker CPU ms/task, native / django.tasks",
            ]
        ),
        _row(["---"] * 5),
    ]
    for pool in DJWORKER_DJANGO_TASKS.pools:
        cpu = [
            spread(values(records, n, pool, "worker_cpu_ms_per_task"), 2)
            for n in (native, framework)
        ]
        rows.append(
            _row(
                [
                    pool,
                    spread(values(records, native, pool, "tasks_per_s")),
                    spread(values(records, framework, pool, "tasks_per_s")),
                    _ratio(ratios(records, framework, native, pool, "tasks_per_s"), 2),
                    " / ".join(cpu),
                ]
            )
        )
    return "**django.tasks through WorkerBackend vs @djworker.task** (`django://`)\n\n" + "\n".join(
        rows
    )


def _ratio(found: list[float], digits: int = 1) -> str:
    return f"{spread(found, digits)}{TIMES}" if found else NONE


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def plots(records: list[Record], out: Path) -> list[str]:
    """The PNGs, or a note why there are none (matplotlib comes with the bench extra)."""
    try:
        from benchmarks.compare import plots as drawing
    except ImportError as missing:
        return [f"no plots: {missing} (pip install -e '.[bench]')"]
    return [str(path) for path in drawing.draw(records, out)]
