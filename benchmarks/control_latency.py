"""How fast the control plane reacts: profile save -> applied, autoscale grow and shrink.

Starts one real ``runworker`` (threads pool) following a fresh profile, then measures, ``--runs``
times each:

* save -> applied: from ``WorkerProfile.save()`` to the worker's row showing the new pool size
  and the new ``applied_revision``;
* grow 1->3: from publishing a backlog of 12 half-second tasks to the row showing 3 slots;
* shrink after the last task: from the last task's ``finished_at`` to the decision that brought
  the pool back to 1 slot (keepalive 2 s: a slot goes once it has not been needed for 2 s,
  sampled on the 1 s control tick, so the final slots may go 1-2 s after the last task).

Usage (PostgreSQL and Redis on this machine)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/djworker_bench \\
        .venv/bin/python benchmarks/control_latency.py --broker redis://127.0.0.1:6379/12
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")


def poll(predicate: Callable[[], Any], timeout_s: float = 60.0) -> float:
    """Seconds (monotonic clock) at which ``predicate`` first held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.01)
    raise SystemExit(f"timed out after {timeout_s}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from djworker.broker import Broker, set_broker
    from djworker.models import TaskResult, Worker, WorkerProfile
    from tests.integration.harness import WorkerProcess
    from tests.taskapp import tasks

    set_broker(Broker(url=args.broker))
    name = f"bench-{uuid.uuid4().hex[:6]}"
    queue = f"{name}-q"
    profile = WorkerProfile.objects.create(name=name, concurrency=1, queues=queue)
    env = {"DATABASE_URL": os.environ["DATABASE_URL"]}
    worker = WorkerProcess("--profile", name, "-n", name, broker_url=args.broker, env=env).start()

    def row() -> Worker:
        return Worker.objects.get(hostname=name)

    applied: list[float] = []
    grew: list[float] = []
    shrank: list[float] = []
    try:
        for run in range(args.runs):
            size = 2 + run % 2
            profile.concurrency = size
            started = time.monotonic()
            profile.save()
            done = poll(
                lambda rev=profile.revision, n=size: (
                    (w := row()).applied_revision == rev and w.pool_size == n
                )
            )
            applied.append(done - started)

        profile.concurrency = None
        profile.autoscale_min, profile.autoscale_max, profile.autoscale_keepalive = 1, 3, 2.0
        profile.save()
        poll(lambda: row().pool_size == 1)
        for _ in range(args.runs):
            started = time.monotonic()
            results = [tasks.sleep.apply_async((0.5,), queue=queue) for _ in range(12)]
            grew.append(poll(lambda: row().pool_size == 3) - started)
            for result in results:
                result.get(timeout=60)
            poll(lambda: row().pool_size == 1)
            # Wall clock here: finished_at is written by the worker, the decision time too.
            last = max(
                TaskResult.objects.filter(id__in=[r.id for r in results]).values_list(
                    "finished_at", flat=True
                )
            )
            shrunk_at = datetime.fromisoformat(row().scale_events[-1]["at"])
            shrank.append((shrunk_at - last).total_seconds())
    finally:
        worker.stop()

    def show(label: str, values: list[float]) -> None:
        print(
            f"{label:<34} median {statistics.median(values):6.2f}s  "
            f"min {min(values):6.2f}s  max {max(values):6.2f}s  (n={len(values)})"
        )

    print(f"broker {args.broker}, control tick 1 s, heartbeat on change")
    show("save -> applied (pool resized)", applied)
    show("grow 1->3 under a backlog", grew)
    show("shrink 3->1 after the last task", shrank)
    print("(keepalive 2 s, counted from the last control tick that saw the slots needed)")


if __name__ == "__main__":
    main()
