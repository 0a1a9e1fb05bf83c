"""No-op throughput and idle enqueue-to-start latency of one ``runworker`` on one broker.

Run on demand, never in the test suite; figures are ratios from one run on a shared machine:

    python benchmarks/throughput.py --broker redis://127.0.0.1:6379/14
    python benchmarks/throughput.py --broker django://   # on DATABASE_URL (PostgreSQL default)
    python benchmarks/throughput.py --api django-tasks -n 2000  # django.tasks, WorkerBackend

Throughput: N no-op messages are published first, then a worker starts, and the clock runs from
its "ready" line until the queue is drained and every result is stored. Latency: single tasks
sent one at a time into the idle worker; started_at - enqueued_at from their result rows.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/djworker_bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="django://")
    parser.add_argument("--pool", default="threads")
    parser.add_argument("-c", "--concurrency", default="4")
    parser.add_argument("-n", "--tasks", type=int, default=5000)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument(
        "--with-results", action="store_true", help="use a task that stores results"
    )
    parser.add_argument(
        "--api",
        choices=("djworker", "django-tasks"),
        default="djworker",
        help="publish @djworker.task calls, or django.tasks enqueue() through WorkerBackend "
        "(results always stored, as django.tasks always stores them)",
    )
    args = parser.parse_args()
    if args.api == "django-tasks":
        args.with_results = True
    os.environ["DJWORKER_BROKER_URL"] = args.broker

    import django

    django.setup()
    ensure_database()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from djworker.models import QueueMessage, TaskResult
    from tests.taskapp import tasks

    queue = f"bench-{uuid.uuid4().hex[:8]}"
    task = tasks.noop if args.with_results else tasks.noop_no_result
    TaskResult.objects.all().delete()
    if args.api == "django-tasks":
        from tests.taskapp import framework_tasks

        enqueue = framework_tasks.noop.using(queue_name=queue).enqueue
    else:
        enqueue = lambda: task.apply_async(queue=queue)  # noqa: E731
    started = time.perf_counter()
    for _ in range(args.tasks):
        enqueue()
    publish_s = time.perf_counter() - started

    worker = start_worker(args, queue)
    try:
        ready_at = wait_ready(worker)
        cpu_at_ready = cpu_seconds(worker.pid)
        drained_at = wait_drained(args.broker, queue, args.tasks, args.with_results)
        cpu_ms = (cpu_seconds(worker.pid) - cpu_at_ready) * 1000 / args.tasks
        rate = args.tasks / (drained_at - ready_at)
        if args.api == "django-tasks":
            args.latency_samples = 0  # measured with @djworker.task only
        call_latency, publish_latency = measure_latency(tasks.noop, queue, args.latency_samples)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    QueueMessage.objects.filter(queue=queue).delete()
    print(
        f"api={args.api} broker={args.broker} pool={args.pool} -c {args.concurrency} "
        f"results={args.with_results}"
    )
    print(f"  publish: {args.tasks / publish_s:,.0f} msgs/s (one process, one at a time)")
    print(f"  worker:  {rate:,.0f} no-op tasks/s over {args.tasks} tasks")
    print(f"  worker process CPU: {cpu_ms:.2f} ms per task (steady on a busy machine)")
    for label, values in (("call", call_latency), ("publish", publish_latency)):
        if len(values) < 2:
            continue
        p50 = statistics.median(values) * 1000
        p99 = statistics.quantiles(values, n=100)[98] * 1000
        print(f"  idle {label}-to-start latency: p50 {p50:.1f} ms, p99 {p99:.1f} ms")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux ``/proc``; pool children excluded).

    Unlike tasks/s, this hardly moves when other processes load the machine.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ensure_database() -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    import psycopg

    params = connection.get_connection_params()
    name = params.pop("dbname")
    with psycopg.connect(**{**params, "dbname": "postgres"}, autocommit=True) as admin:
        if not admin.execute("select 1 from pg_database where datname=%s", [name]).fetchone():
            admin.execute(f'create database "{name}"')


def start_worker(args: argparse.Namespace, queue: str) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        str(ROOT / "manage.py"),
        "runworker",
        "--pool",
        args.pool,
        "-c",
        args.concurrency,
        "-Q",
        queue,
        "-l",
        "WARNING",
    ]
    env = {**os.environ, "DJWORKER_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


def wait_ready(worker: subprocess.Popen[str]) -> float:
    assert worker.stdout is not None
    for line in worker.stdout:
        if line.startswith("  tasks ("):
            # Keep reading what the worker prints, or a full pipe would stall it.
            threading.Thread(target=worker.stdout.read, daemon=True).start()
            return time.perf_counter()
    raise SystemExit("the worker exited before it was ready")


def wait_drained(broker: str, queue: str, count: int, with_results: bool) -> float:
    from djworker.models import QueueMessage, TaskResult

    if broker.startswith("django"):
        remaining = lambda: QueueMessage.objects.filter(queue=queue).count()  # noqa: E731
    else:
        from kombu import Connection

        connection = Connection(broker)
        channel = connection.default_channel

        def remaining() -> int:
            if broker.startswith("redis"):
                return int(channel._size(queue)) + int(channel.client.hlen("unacked"))
            return int(channel.queue_declare(queue, passive=True).message_count)

    while remaining() or (
        with_results and TaskResult.objects.filter(queue=queue, status="SUCCESSFUL").count() < count
    ):
        time.sleep(0.01)
    return time.perf_counter()


def measure_latency(task: object, queue: str, samples: int) -> tuple[list[float], list[float]]:
    """(call-to-start, publish-to-start) in seconds for single tasks sent into an idle worker.

    Call-to-start includes storing the READY result row; publish-to-start starts the clock when
    the envelope is handed to kombu, which is what a broker-only comparison measures.
    """
    from djworker.broker import get_broker
    from djworker.models import TaskResult

    broker = get_broker()
    real_publish = broker.publish
    published_at: dict[str, float] = {}

    def timed_publish(envelope: dict[str, object]) -> None:
        published_at[str(envelope["id"])] = time.time()
        real_publish(envelope)

    broker.publish = timed_publish  # type: ignore[method-assign]
    called_at: dict[str, float] = {}
    try:
        for _ in range(samples):
            before = time.time()
            result = task.apply_async(queue=queue)  # type: ignore[attr-defined]
            called_at[result.id] = before
            result.get(timeout=30, interval=0.005)
            time.sleep(0.02)  # let the worker go idle again
    finally:
        broker.publish = real_publish  # type: ignore[method-assign]
    rows = TaskResult.objects.filter(id__in=list(called_at)).values_list("id", "started_at")
    starts = {task_id: started.timestamp() for task_id, started in rows}
    return (
        [starts[i] - called_at[i] for i in starts],
        [starts[i] - published_at[i] for i in starts],
    )


if __name__ == "__main__":
    main()
