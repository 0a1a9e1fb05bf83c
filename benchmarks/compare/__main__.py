"""Run djworker and its peers side by side, interleaved run by run; write JSONL, Markdown, PNGs.

    python -m benchmarks.compare                # 3 repeats of everything (about 15 min)
    python -m benchmarks.compare --quick        # a smoke run: 1 repeat, few tasks
    python -m benchmarks.compare --only djworker-redis,celery --pools threads
    python -m benchmarks.compare --only djworker-redis,djworker-db --baseline v0.1  # before/after

Within a repeat, every (broker, pool) cell runs its implementations back to back, starting
with a different one each repeat (A B, B A, A B...), so slow drifts of the machine's load hit
every implementation alike. The runs go to ``OUT/runs.jsonl`` as they finish; the table to
``OUT/comparison.md``, the plots to ``OUT/throughput.png`` and ``OUT/latency.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.compare import implementations, report, run
from benchmarks.compare.services import ROOT, Services, prepare_database, start_redis


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.compare", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="1 repeat of 200 no-ops, 30 probes")
    parser.add_argument("--repeats", type=int, help="repeats of every run (default 3)")
    parser.add_argument("--tasks", type=int, help="no-ops per run (default 1500)")
    parser.add_argument("--probes", type=int, help="latency probes per run (default 200)")
    parser.add_argument("--probe-rate", type=float, default=100.0, help="probes per second")
    parser.add_argument(
        "--bulk",
        type=int,
        help="no-ops per bulk publish, on the threads runs (default 5000; 0: off)",
    )
    parser.add_argument("--deadline", type=float, default=180.0, help="seconds a drain may take")
    parser.add_argument(
        "--only",
        default=",".join(i.name for i in implementations.ALL),
        help="comma-separated implementations (default all: %(default)s)",
    )
    parser.add_argument("--pools", default=",".join(implementations.POOLS))
    parser.add_argument("--brokers", default=",".join(implementations.BROKERS))
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/djworker_bench"),
        help="PostgreSQL server; its database name prefixes each implementation's database",
    )
    parser.add_argument("--redis-port", type=int, default=6390, help="port of the private Redis")
    parser.add_argument(
        "--baseline",
        metavar="GIT_REF",
        help="also run djworker as it was at this git ref, next to the checkout's, on both brokers",
    )
    parser.add_argument("--out", type=Path, help="output folder (default benchmark-results/UTC)")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"repeats": (1, 3), "tasks": (200, 1500), "probes": (30, 200), "bulk": (500, 5000)}
    for name, (when_quick, otherwise) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, when_quick if quick else otherwise)
    if args.out is None:
        args.out = ROOT / "benchmark-results" / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return args


def plan(args: argparse.Namespace) -> list[tuple[int, implementations.Implementation, str]]:
    """(repeat, implementation, pool) in the order they run: interleaved, rotated per repeat."""
    chosen = implementations.by_names(args.only)
    if args.baseline:
        source = extract_baseline(args.baseline, args.out / "baseline")
        references = {i.broker for i in chosen if i in implementations.REFERENCE.values()}
        chosen += tuple(
            i for i in implementations.baselines(args.baseline, source) if i.broker in references
        )
    pools = [pool for pool in implementations.POOLS if pool in args.pools.split(",")]
    brokers = [b for b in implementations.BROKERS if b in args.brokers.split(",")]
    runs = []
    for repeat in range(1, args.repeats + 1):
        for broker in brokers:
            for pool in pools:
                cell = [i for i in chosen if i.broker == broker and pool in i.pools]
                shift = (repeat - 1) % len(cell) if cell else 0
                runs += [(repeat, i, pool) for i in cell[shift:] + cell[:shift]]
    return runs


def extract_baseline(ref: str, folder: Path) -> str:
    """``djworker/`` as it was at git ``ref``, in ``folder``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "djworker"], cwd=ROOT, capture_output=True
    )
    if archive.returncode:
        raise SystemExit(f"--baseline {ref}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return str(folder)


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C, so every run's finally stops its
    # worker and the Redis server: they run in sessions of their own and would outlive us.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = plan(args)
    if not runs:
        print("nothing to run: check --only, --pools and --brokers", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    services = Services(args.database_url, args.redis_port)
    pools = args.pools.split(",")
    bulk_pool = "threads" if "threads" in pools else pools[0]
    settings = run.Settings(
        args.tasks, args.probes, args.probe_rate, args.bulk, bulk_pool, args.deadline
    )
    meta = machine(args)
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2))
    print(f"{len(runs)} runs; output in {args.out}", flush=True)
    redis_server = start_redis(args.redis_port, args.out / "redis")
    records: list[dict[str, Any]] = []
    began = time.monotonic()
    try:
        for implementation in {i.database: i for _, i, _ in runs}.values():
            prepare_database(services, implementation)
        with (args.out / "runs.jsonl").open("w") as jsonl:
            for number, (repeat, implementation, pool) in enumerate(runs, 1):
                record = run.execute(implementation, pool, repeat, settings, services, args.out)
                records.append(record)
                jsonl.write(json.dumps(record) + "\n")
                jsonl.flush()
                elapsed = time.monotonic() - began
                left = elapsed / number * (len(runs) - number)
                print(
                    f"[{number}/{len(runs)} {elapsed / 60:.1f} min, ~{left / 60:.0f} min left]"
                    f" {report.one_line(record)}",
                    flush=True,
                )
    finally:
        redis_server.terminate()
        redis_server.wait(10)
    meta["duration_s"] = round(time.monotonic() - began)
    (args.out / "meta.json").write_text(json.dumps(meta, indent=2))
    (args.out / "comparison.md").write_text(report.markdown(records, meta))
    written = report.plots(records, args.out)
    print(f"wrote {args.out / 'runs.jsonl'}, {args.out / 'comparison.md'}", *written, sep="\n  ")
    failed = [r["run"] for r in records if r["status"] != "ok"]
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def machine(args: argparse.Namespace) -> dict[str, Any]:
    """What the figures came from, written next to them."""
    import django
    import kombu

    versions: dict[str, str | None] = {"python": platform.python_version()}
    versions["django"] = django.__version__
    versions["kombu"] = kombu.__version__
    for module in ("celery", "huey", "django_celery_results", "django_tasks_db"):
        try:
            versions[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            versions[module] = None
    return {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
        "repeats": args.repeats,
        "tasks": args.tasks,
        "probes": args.probes,
        "probe_rate": args.probe_rate,
        "bulk": args.bulk,
        "conn_max_age": 0,
        "djworker_commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "baseline": args.baseline,
    }


if __name__ == "__main__":
    sys.exit(main())
