"""The comparison runner (benchmarks/compare) end to end, for djworker alone with a few tasks.

Only where the ``bench`` extra is installed (skipped otherwise). Nothing here is timed: the
tests check that a run produces its JSONL line, Markdown table and plots, and that a run which
misses its deadline fails and names every unfinished task with where it sits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.faults.servers import free_port

for _module in ("celery", "django_celery_results", "huey", "django_tasks_db", "matplotlib"):
    pytest.importorskip(_module, reason="the bench extra is not installed")

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def run_compare(out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    database = urlsplit(
        os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/djworker")
    )
    if not database.scheme.startswith("postgres"):
        pytest.skip("the comparison runner stores results in PostgreSQL")
    prefix = database._replace(path=f"{database.path}_cmp_smoke")
    command = [
        *(sys.executable, "-m", "benchmarks.compare", "--only", "djworker-redis"),
        *("--pools", "threads", "--repeats", "1", "--tasks", "12", "--probes", "3"),
        *("--bulk", "0", "--out", str(out), "--database-url", urlunsplit(prefix)),
        *("--redis-port", str(free_port("DJWORKER_FAULT_REDIS_PORTS"))),
        *options,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def test_a_run_writes_its_jsonl_line_table_and_plots(tmp_path: Path) -> None:
    # Enough no-ops that at least 10 are timed even when the first count, taken as the worker
    # starts, already finds some done (the runner times only from the first finished one).
    finished = run_compare(tmp_path, "--tasks", "60")

    assert finished.returncode == 0, finished.stdout + finished.stderr
    (record,) = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert record["status"] == "ok"
    assert (record["implementation"], record["pool"], record["tasks"]) == (
        "djworker-redis",
        "threads",
        60,
    )
    assert record["probes"] == 3
    for figure in ("delay_calls_per_s", "tasks_per_s", "probe_p50_ms", "probe_p99_ms"):
        assert record[figure] > 0, figure
    table = (tmp_path / "comparison.md").read_text()
    assert "**No-op tasks/s, Redis broker**" in table
    assert "| threads |" in table
    for plot in ("throughput.png", "latency.png"):
        assert (tmp_path / plot).read_bytes().startswith(b"\x89PNG"), plot


def test_a_run_past_its_deadline_fails_and_names_where_each_task_sits(tmp_path: Path) -> None:
    # A zero deadline: the worker cannot have finished a single no-op at the first look.
    finished = run_compare(tmp_path, "--deadline", "0")

    assert finished.returncode == 1, finished.stdout + finished.stderr
    (record,) = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert record["status"] == "failed"
    assert record["failure"].startswith("stalled: 0 of 12 no-ops done")
    ids = next((tmp_path / "logs").glob("*.ids")).read_text().split()
    assert sorted(record["unfinished"]) == sorted(ids)
    # Never consumed: each one still in the Redis list, its READY row written at the call.
    assert set(record["unfinished"].values()) == {"in the broker queue; result row READY"}
    assert "12 task(s): in the broker queue; result row READY" in finished.stdout
    assert ids[0] in finished.stdout
    assert "Failed runs" in (tmp_path / "comparison.md").read_text()
