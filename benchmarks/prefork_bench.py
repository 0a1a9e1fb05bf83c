"""Prefork pool benchmarks: CPU speed-up, ORM throughput and connections, memory, replacement.

Run on demand (not in CI), against local services only:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/djw_bench \
    BENCH_BROKER_URL=redis://127.0.0.1:6379/11 .venv/bin/python benchmarks/prefork_bench.py

The database must exist; it is migrated and its task results are deleted between runs.
Prints one table of figures from a single run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/11")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from djworker.broker import Broker, set_broker  # noqa: E402
from djworker.models import TaskResult  # noqa: E402
from example_project.demo.tasks import crunch  # noqa: E402
from tests.taskapp import prefork_tasks, tasks  # noqa: E402


class Worker:
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.queue = f"bench-{uuid.uuid4().hex[:8]}"
        self.log = Path(tempfile.mkdtemp()) / "worker.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "manage.py"),
                "runworker",
                "-Q",
                self.queue,
                "-l",
                "WARNING",
                "--broker",
                BROKER,
                *args,
            ],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=open(self.log, "wb"),  # noqa: SIM115 - the worker owns it until exit
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while "  tasks (" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def fork_server(self) -> int:
        """The worker's only child process: the pool's fork server."""
        (server,) = children_of(self.proc.pid)
        return server

    def children(self) -> list[int]:
        """The pool processes: the fork server's children."""
        return children_of(self.fork_server())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def run_batch(worker: Worker, task: Any, args_list: list[tuple[Any, ...]]) -> float:
    """Publish every call, wait until all have a final result; seconds from first publish."""
    TaskResult.objects.all().delete()
    start = time.perf_counter()
    for args in args_list:
        task.apply_async(args, queue=worker.queue)
    while TaskResult.objects.filter(status__in=["SUCCESSFUL", "FAILED"]).count() < len(args_list):
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    failed = TaskResult.objects.filter(status="FAILED").count()
    if failed:
        raise SystemExit(f"{failed} task(s) failed")
    return elapsed


def processing_span() -> float:
    """First task start to last task end, from the result rows of the last batch.

    For CPU-bound runs this leaves out publishing, which competes for the same two cores.
    """
    from django.db.models import Max, Min

    span = TaskResult.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
    return float((span["last"] - span["first"]).total_seconds())


def private_kib(pid: int) -> int:
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    )
    return sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty"))


def rss_kib(pid: int) -> int:
    return (
        int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    )


def main() -> None:
    call_command("migrate", verbosity=0)
    set_broker(Broker(url=BROKER))
    rows: list[tuple[str, str]] = []

    cpu_calls = [(200_000,)] * 200
    solo = Worker("--pool", "solo")
    t_solo = run_batch(solo, crunch, cpu_calls)
    span_solo = processing_span()
    solo.stop()
    pre = Worker("--pool", "prefork", "-c", "2")
    t_pre = run_batch(pre, crunch, cpu_calls)
    span_pre = processing_span()
    pre.stop()
    rows += [
        ("CPU 200 x crunch: solo (from first publish)", f"{t_solo:.2f} s"),
        ("CPU 200 x crunch: prefork -c 2 (from first publish)", f"{t_pre:.2f} s"),
        ("CPU speed-up prefork -c 2 / solo (from first publish)", f"{t_solo / t_pre:.2f}x"),
        ("CPU speed-up, first start to last end", f"{span_solo / span_pre:.2f}x"),
    ]

    n = 5000
    for age in ("0", "60"):
        w = Worker("--pool", "prefork", "-c", "2", env={"CONN_MAX_AGE": age})
        elapsed = run_batch(w, prefork_tasks.orm_round_trip, [(i,) for i in range(n)])
        backends = {r.result["backend"] for r in TaskResult.objects.only("result")}
        w.stop()
        rows += [
            (f"ORM {n} tasks, CONN_MAX_AGE={age}: tasks/s", f"{n / elapsed:.0f}"),
            (f"ORM {n} tasks, CONN_MAX_AGE={age}: connections opened", str(len(backends))),
        ]

    w = Worker("--pool", "prefork", "-c", "2")
    time.sleep(1)
    kids = w.children()
    server = w.fork_server()
    fresh = [private_kib(pid) for pid in kids]
    server_fresh = private_kib(server)
    run_batch(w, tasks.noop, [()] * 200)
    used = [private_kib(pid) for pid in kids]
    rows += [
        ("parent RSS", f"{rss_kib(w.proc.pid) / 1024:.1f} MiB"),
        ("child RSS (mostly shared with the parent)", f"{rss_kib(kids[0]) / 1024:.1f} MiB"),
        ("private memory per fresh child (USS)", f"{sum(fresh) / len(fresh) / 1024:.1f} MiB"),
        ("private memory per child after 100 tasks", f"{sum(used) / len(used) / 1024:.1f} MiB"),
        ("private memory of the fork server, fresh", f"{server_fresh / 1024:.1f} MiB"),
        ("private memory of the fork server, after", f"{private_kib(server) / 1024:.1f} MiB"),
    ]
    w.stop()

    plain = Worker("--pool", "prefork", "-c", "1")
    t_plain = run_batch(plain, tasks.noop, [()] * 200)
    plain.stop()
    recycled = Worker("--pool", "prefork", "-c", "1", "--max-tasks-per-child", "1")
    t_recycled = run_batch(recycled, tasks.noop, [()] * 200)
    recycled.stop()
    rows.append(("time to replace a child", f"{(t_recycled - t_plain) / 200 * 1000:.1f} ms"))

    width = max(len(label) for label, _ in rows)
    print(f"{'measure':<{width}}  value")
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


if __name__ == "__main__":
    main()
