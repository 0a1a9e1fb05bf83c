"""The fault table of docs/reliability.md, from the figures a run of the fault suite wrote.

    DJWORKER_FAULT_FIGURES=/tmp/figures.jsonl pytest tests/faults
    python -m tests.faults.figures /tmp/figures.jsonl

One row per case, broker and pool, in the order they ran; a case run more than once (a rerun,
or ``--count``) shows the range of each figure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COLUMNS = ["tasks", "running_at_fault", "lost", "duplicates", "seconds"]
BROKERS = {"redis": "`redis://`", "amqp": "`amqp://`", "django": "`django://` (PostgreSQL)"}


def span(values: list[float]) -> str:
    low, high = min(values), max(values)
    shown = [f"{v:g}" for v in (low, high)]
    return shown[0] if low == high else f"{shown[0]}-{shown[1]}"


def table(lines: list[str]) -> str:
    rows: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    for line in lines:
        if line.strip():
            figures = json.loads(line)
            rows.setdefault((figures["case"], figures["broker"], figures["pool"]), []).append(
                figures
            )
    out = [
        "| fault | broker | pool | tasks | running at the fault | lost | duplicate runs"
        " | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (case, broker, pool), runs in rows.items():
        cells = [span([run[column] for run in runs]) for column in COLUMNS]
        out.append(f"| {case} | {BROKERS.get(broker, broker)} | {pool} | {' | '.join(cells)} |")
    return "\n".join(out)


if __name__ == "__main__":
    print(table(Path(sys.argv[1]).read_text().splitlines()))
