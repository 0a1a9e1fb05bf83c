"""Publishing speed from one process: ``.delay()`` calls/s and ``enqueue_many`` tasks/s per broker.

Run on demand, never in the test suite; results are stored (a READY row per call) in
``DATABASE_URL`` (PostgreSQL by default):

    python benchmarks/publish.py --broker django:// --broker redis://127.0.0.1:6379/14
    python benchmarks/publish.py --broker amqp://guest:guest@127.0.0.1:5672// -n 2000 -m 20000

Each broker gets a fresh queue, which is purged and whose rows are deleted afterwards. Besides
the wall-clock rate, the table shows the publisher's CPU time per call, which a busy machine
disturbs less than the rate, and the machine's load average, so figures from a shared machine
can be read for what they are.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/djworker_bench")


@dataclass(frozen=True)
class Figure:
    broker: str
    way: str
    calls: int
    wall_s: float
    cpu_s: float

    @property
    def per_s(self) -> float:
        return self.calls / self.wall_s

    @property
    def cpu_us_per_call(self) -> float:
        return self.cpu_s / self.calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", action="append", help="repeatable; default django://")
    parser.add_argument("-n", "--delay-calls", type=int, default=3000)
    parser.add_argument("-m", "--bulk-calls", type=int, default=30000)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()

    import django

    django.setup()
    from benchmarks.throughput import ensure_database

    ensure_database()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.db import connection

    figures: list[Figure] = []
    for url in args.broker or ["django://"]:
        figures += measure(url, args.delay_calls, args.bulk_calls, args.batch_size)
    load = os.getloadavg()
    print(
        f"results in {connection.vendor}, CONN_MAX_AGE={connection.settings_dict['CONN_MAX_AGE']}"
    )
    print(f"load average (1, 5, 15 min) at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("| broker | way | calls | calls/s | publisher CPU per call |")
    print("|---|---|---:|---:|---:|")
    for figure in figures:
        print(
            f"| {figure.broker} | {figure.way} | {figure.calls} | {figure.per_s:,.0f} | "
            f"{figure.cpu_us_per_call:,.0f} µs |"
        )


def measure(url: str, delay_calls: int, bulk_calls: int, batch_size: int) -> list[Figure]:
    from djworker.broker import Broker, redact_url, set_broker
    from djworker.models.results import TaskResult
    from tests.integration.harness import purge_queue
    from tests.taskapp.tasks import add

    broker = Broker(url=url)
    set_broker(broker)
    queue = f"bench-publish-{uuid.uuid4().hex[:8]}"
    shown = redact_url(url)
    try:
        add.apply_async((0, 0), queue=queue)  # connections open and the queue declared first
        wall, cpu = time.perf_counter(), time.process_time()
        for n in range(delay_calls):
            add.apply_async((n, 1), queue=queue)
        delay = Figure(
            shown, ".delay()", delay_calls, time.perf_counter() - wall, time.process_time() - cpu
        )
        wall, cpu = time.perf_counter(), time.process_time()
        add.enqueue_many(((n, 1) for n in range(bulk_calls)), queue=queue, batch_size=batch_size)
        bulk = Figure(
            shown,
            f"enqueue_many (batches of {batch_size})",
            bulk_calls,
            time.perf_counter() - wall,
            time.process_time() - cpu,
        )
    finally:
        purge_queue(broker, queue)
        TaskResult.objects.filter(queue=queue).delete()
        broker.close()
        set_broker(None)
    return [delay, bulk]


if __name__ == "__main__":
    main()
