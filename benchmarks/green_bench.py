"""Green-pool benchmarks: overlapping I/O, no-op throughput, and the database budget.

Run from the repository root against a migrated database (the script migrates it)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/djw_green \\
        .venv/bin/python benchmarks/green_bench.py [--broker redis://127.0.0.1:6379/12] [io noop db]

Scenarios (each starts a real ``python -m djworker runworker`` after the queue is filled):

* ``io``: 2,000 tasks that each wait 50 ms; gevent and eventlet at -c 200, threads at -c 50.
  "processing" is first task start to last task end, measured by the tasks themselves.
* ``pool``: the same 2,000 waits handed straight to the pool object (real ``execute()``, no
  broker): what the pool itself costs.
* ``noop``: 3,000 tasks that only record their end; tasks per second for each pool.
* ``db``: 1,000 tasks that write a row, wait 50 ms and read it back, gevent -c 300; samples
  the worker's connections in ``pg_stat_activity`` every 10 ms; reports the peak, and what is
  left after shutdown.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: where the tasks record their start and end times, whatever the broker
REDIS_URL = "redis://127.0.0.1:6379/12"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.green.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/djw_green")


def setup(broker_url: str) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    from djworker.broker import Broker, set_broker

    call_command("migrate", verbosity=0)
    set_broker(Broker(url=broker_url))


def start_worker(
    pool: str, concurrency: int, queue: str, broker_url: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    log = open(f"/tmp/green-bench-{queue}.log", "wb")  # noqa: SIM115 - lives with the process
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "djworker",
            "runworker",
            f"--pool={pool}",
            f"-c{concurrency}",
            "-Q",
            queue,
            "--broker",
            broker_url,
            "--loglevel=WARNING",
        ],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop_worker(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(60)


def wait_list(client: Any, key: str, n: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while client.llen(key) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {client.llen(key)}/{n} tasks recorded under {key}")
        time.sleep(0.02)


def io_run(
    pool: str, concurrency: int, broker_url: str, n: int, ms: int, redis_url: str = REDIS_URL
) -> dict[str, float]:
    import redis

    from tests.taskapp.green_tasks import io_wait

    client = redis.Redis.from_url(redis_url)
    queue, key = f"bench-{uuid.uuid4().hex[:8]}", f"bench-result-{uuid.uuid4().hex[:8]}"
    for _ in range(n):
        io_wait.apply_async((ms, redis_url, key), queue=queue)
    wall0 = time.time()
    proc = start_worker(pool, concurrency, queue, broker_url)
    try:
        wait_list(client, key, n)
        wall = time.time() - wall0
    finally:
        stop_worker(proc)
    spans = [tuple(map(float, raw.split())) for raw in client.lrange(key, 0, -1)]
    client.delete(key)
    first = min(s for s, _ in spans)
    last = max(e for _, e in spans)
    return {"processing_s": last - first, "rate_per_s": n / (last - first), "with_startup_s": wall}


def db_run(broker_url: str, n: int, concurrency: int, budget: int | str | None) -> dict[str, Any]:
    from django.db import connection

    from djworker.models import TaskResult
    from tests.taskapp.green_tasks import orm_then_wait

    app_name = f"djw-bench-{uuid.uuid4().hex[:6]}"
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    ids = [orm_then_wait.apply_async((50, f"bench-{i}"), queue=queue).id for i in range(n)]
    env = {"DJWORKER_DB_APP_NAME": app_name}
    if budget == "none":
        env["CONN_MAX_AGE"] = "60"  # Django refuses a pool then: no budget
    elif budget:
        env["DJWORKER_DB_POOL_MAX"] = str(budget)
    peak, done = 0, threading.Event()

    def count() -> int:
        with connection.cursor() as cur:
            cur.execute(
                "select count(*) from pg_stat_activity where application_name = %s", [app_name]
            )
            return int(cur.fetchone()[0])

    t0 = time.time()
    proc = start_worker("gevent", concurrency, queue, broker_url, env=env)
    try:
        while True:
            peak = max(peak, count())
            finished = TaskResult.objects.filter(
                id__in=ids, status__in=("SUCCESSFUL", "FAILED")
            ).count()
            if finished >= n or time.time() - t0 > 180:
                break
            time.sleep(0.01)
        elapsed = time.time() - t0
    finally:
        stop_worker(proc)
    done.set()
    ok = TaskResult.objects.filter(id__in=ids, status="SUCCESSFUL").count()
    return {
        "tasks": n,
        "succeeded": ok,
        "peak_connections": peak,
        "left_after_shutdown": count(),
        "elapsed_s": round(elapsed, 2),
    }


def pool_only(pool: str, concurrency: int, n: int, ms: int) -> float:
    """Seconds for ``n`` waits of ``ms`` through the pool and the real execute(), no broker."""
    import uuid as uuid_module

    from djworker import message
    from djworker.concurrency import resolve_pool
    from djworker.execution import TaskExecutor
    from djworker.job import Job
    from tests.taskapp.green_tasks import wait_ms

    done: list[object] = []
    instance = resolve_pool(pool)(size=concurrency, on_outcome=done.append, executor=TaskExecutor())
    instance.start()
    jobs = [
        Job(
            i,
            message.build(
                task_id=str(uuid_module.uuid4()),
                task_name=wait_ms.name,
                args=[ms],
                kwargs={},
                queue="bench",
                priority=0,
            ),
        )
        for i in range(n)
    ]
    t0 = time.perf_counter()
    for job in jobs:
        instance.apply_async(job)
    while len(done) < n:
        time.sleep(0.001)
    elapsed = time.perf_counter() - t0
    instance.stop(graceful=True, timeout_s=5)
    return elapsed


def pool_only_main(pool: str, concurrency: int) -> None:
    # Runs in its own process so the green library can patch before Django is imported.
    from djworker.green import patch_if_requested

    patch_if_requested(["runworker", f"--pool={pool}"])
    import django

    django.setup()
    logging.getLogger("djworker").setLevel(logging.WARNING)
    print(f"  {pool:<9} -c {concurrency:<4} {pool_only(pool, concurrency, 2000, 50):.2f} s")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--pool-only":
        pool_only_main(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/12")
    parser.add_argument("scenarios", nargs="*", default=["io", "pool", "noop", "db"])
    opts = parser.parse_args()
    setup(opts.broker)
    if "pool" in opts.scenarios:
        print("pool and execute() only, no broker: 2,000 tasks x 50 ms wait")
        for pool, c in (("gevent", 200), ("eventlet", 200), ("threads", 50)):
            subprocess.run([sys.executable, __file__, "--pool-only", pool, str(c)], check=True)
    if "io" in opts.scenarios:
        print("I/O: 2,000 tasks x 50 ms wait")
        for pool, c in (("gevent", 200), ("eventlet", 200), ("threads", 50)):
            r = io_run(pool, c, opts.broker, 2000, 50)
            print(
                f"  {pool:<9} -c {c:<4} processing {r['processing_s']:.2f} s "
                f"({r['rate_per_s']:.0f}/s; {r['with_startup_s']:.2f} s with start-up)"
            )
    if "noop" in opts.scenarios:
        print("no-op: 3,000 tasks")
        for pool, c in (("gevent", 100), ("eventlet", 100), ("threads", 8)):
            r = io_run(pool, c, opts.broker, 3000, 0)
            print(f"  {pool:<9} -c {c:<4} {r['rate_per_s']:.0f} tasks/s")
    if "db" in opts.scenarios:
        print("database: 1,000 ORM tasks (write, wait 50 ms, read), gevent -c 300")
        for budget in (None, 20, "none"):
            label = {None: "default budget", "none": "no budget (CONN_MAX_AGE=60)"}.get(
                budget, f"pool max_size={budget}"
            )
            print(f"  {label}: {db_run(opts.broker, 1000, 300, budget)}")


if __name__ == "__main__":
    main()
