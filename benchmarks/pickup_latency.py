"""Idle pick-up latency of ``django://`` and the PostgreSQL sessions a worker opens meanwhile.

Run on demand, never in the test suite; figures come from a shared machine:

    python benchmarks/pickup_latency.py                       # django:// on DATABASE_URL
    python benchmarks/pickup_latency.py --dead-rows 300000    # after 300k dead queue rows
    python benchmarks/pickup_latency.py --pool solo --conn-max-age 0

One ``runworker`` consumes a fresh queue. Tasks are published one every ``1 / --rate`` seconds
(100/s by default) without waiting for them, as a steady trickle into an idle worker; pick-up
latency is the task's ``started_at`` (its result row) minus the moment its message was handed to
kombu. Sessions: the worker's connections carry their own ``application_name``, and
``pg_stat_activity`` is sampled every 10 ms for the backends of that name; every backend pid
seen is a session the worker opened. They are counted during the paced run and during
``--idle-s`` seconds of idleness after it.

``--dead-rows N`` first inserts N messages into the benchmark's own queue and deletes them with
autovacuum disabled on the queue table (restored afterwards), so every query of the transport
has N dead rows in its way, as between two autovacuum runs of a busy queue; the time of the
transport's idle query and of a claim are printed too.
"""

from __future__ import annotations

import argparse
import contextlib
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

from benchmarks import throughput  # noqa: E402
from benchmarks.throughput import ensure_database, wait_ready  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/djworker_bench")

APP_NAME = "djworker-pickup-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--broker", default="django://", help="another broker for comparison, e.g. redis://..."
    )
    parser.add_argument("--pool", default="threads")
    parser.add_argument("-c", "--concurrency", default="4")
    parser.add_argument("-n", "--tasks", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0, help="tasks published per second")
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--dead-rows", type=int, default=0)
    parser.add_argument("--conn-max-age", default="0", help="CONN_MAX_AGE of the worker")
    parser.add_argument(
        "--transport-only",
        action="store_true",
        help="no worker: a kombu consumer in this process, publish-to-delivery of the transport",
    )
    args = parser.parse_args()
    os.environ["DJWORKER_BROKER_URL"] = args.broker

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("pickup_latency.py measures PostgreSQL sessions: set DATABASE_URL")
    ensure_database()
    call_command("migrate", verbosity=0)
    vacuum_queue_table()  # each run starts from the dead rows it makes itself
    from djworker.models import QueueMessage, TaskResult
    from tests.taskapp import tasks

    queue = f"bench-{uuid.uuid4().hex[:8]}"
    TaskResult.objects.all().delete()
    if args.dead_rows:
        make_dead_rows(queue, args.dead_rows)
    if args.transport_only:
        try:
            latencies = transport_run(queue, args.tasks, args.rate)
        finally:
            if args.dead_rows:
                restore_autovacuum()
        p50 = statistics.median(latencies) * 1000
        p99 = statistics.quantiles(latencies, n=100)[98] * 1000
        print(f"{args.broker} transport only, rate={args.rate:g}/s dead_rows={args.dead_rows}")
        print(f"  publish-to-delivery: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        return
    sessions = SessionWatch()
    worker = start_worker(args, queue)
    try:
        wait_ready(worker)
        time.sleep(1.0)  # the worker's first idle poll and its LISTEN
        sessions.start()
        idle_query_ms, claim_ms = time_queries(queue) if args.dead_rows else (None, None)
        opened_at_start = sessions.opened()
        latencies = paced_run(tasks.noop, queue, args.tasks, args.rate)
        opened_in_run = sessions.opened() - opened_at_start
        before_idle = sessions.opened()
        time.sleep(args.idle_s)
        opened_idle = sessions.opened() - before_idle
        held = sessions.current()
    finally:
        sessions.stop()
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        if args.dead_rows:
            restore_autovacuum()
    QueueMessage.objects.filter(queue=queue).delete()
    print(
        f"{args.broker} pool={args.pool} -c {args.concurrency} CONN_MAX_AGE={args.conn_max_age} "
        f"rate={args.rate:g}/s tasks={args.tasks} dead_rows={args.dead_rows}"
    )
    if idle_query_ms is not None:
        print(f"  idle query {idle_query_ms:.2f} ms, empty claim {claim_ms:.2f} ms (best of 20)")
    p50 = statistics.median(latencies) * 1000
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    print(f"  pick-up latency (publish to start): p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(
        f"  worker sessions opened: {opened_in_run} during the run, {opened_idle} in "
        f"{args.idle_s:g} s idle after it; held at the end: {held}"
    )


def start_worker(args: argparse.Namespace, queue: str) -> subprocess.Popen[str]:
    """``throughput.py``'s worker, its sessions named ``APP_NAME``, with ``--conn-max-age``."""
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.settings_prefork",  # for the worker: read at its start
            "DJWORKER_TEST_APP_NAME": APP_NAME,
            "CONN_MAX_AGE": args.conn_max_age,
        }
    )
    return throughput.start_worker(args, queue)


def vacuum_queue_table() -> None:
    from django.db import connection

    from djworker.models import QueueMessage

    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM {connection.ops.quote_name(QueueMessage._meta.db_table)}")


def make_dead_rows(queue: str, count: int) -> None:
    """``count`` messages of ``queue`` inserted and deleted, autovacuum off for the table."""
    from django.db import connection

    from djworker.models import QueueMessage

    table = connection.ops.quote_name(QueueMessage._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        cursor.execute(
            f"INSERT INTO {table} (queue, priority, payload, visible_at, created_at, lease, "
            "deliveries) SELECT %s, 0, '{}', now(), now(), '', 0 FROM generate_series(1, %s)",
            [queue, count],
        )
        cursor.execute(f"DELETE FROM {table} WHERE queue = %s", [queue])


def restore_autovacuum() -> None:
    from django.db import connection

    from djworker.models import QueueMessage

    table = connection.ops.quote_name(QueueMessage._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")


def time_queries(queue: str) -> tuple[float, float]:
    """Best-of-20 milliseconds of the transport's idle query and of a claim finding nothing."""
    from queue import Empty

    from django.utils import timezone

    try:
        from djworker.broker_schemes import BrokerConnection
    except ImportError:  # djworker before broker_schemes: kombu's alias for django://
        from kombu import Connection as BrokerConnection

    connection = BrokerConnection("django://")
    transport = connection.transport
    channel = connection.channel()
    idle, claim = [], []
    try:
        for _ in range(20):
            started = time.perf_counter()
            if hasattr(transport, "ops"):
                transport.ops.next_due([queue], now=timezone.now())
            else:  # djworker before the per-vendor operations
                transport._next_due_in_s([queue])
            idle.append(time.perf_counter() - started)
            started = time.perf_counter()
            with contextlib.suppress(Empty):
                channel._get(queue)
            claim.append(time.perf_counter() - started)
    finally:
        connection.release()
    return min(idle) * 1000, min(claim) * 1000


class SessionWatch:
    """Backends of the worker's ``application_name``, sampled every 10 ms."""

    def __init__(self) -> None:
        import psycopg
        from django.db import connection

        params = connection.get_connection_params()
        for django_only in ("cursor_factory", "context"):
            params.pop(django_only, None)
        self._conn = psycopg.connect(**params, autocommit=True)
        self._seen: set[tuple[int, object]] = set()
        self._now: int = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._sample()
        self._thread.start()

    def _sample(self) -> None:
        rows = self._conn.execute(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE application_name = %s",
            [APP_NAME],
        ).fetchall()
        with self._lock:
            self._seen.update((pid, started) for pid, started in rows)
            self._now = len(rows)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self._sample()

    def opened(self) -> int:
        with self._lock:
            return len(self._seen)

    def current(self) -> int:
        with self._lock:
            return self._now

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._conn.close()


def transport_run(queue_name: str, count: int, rate: float) -> list[float]:
    """Publish-to-delivery seconds of ``count`` messages paced at ``rate`` into a kombu consumer.

    The consumer drains on its own thread and connection, as a worker's consumer does; the
    clock starts when the publish returns (the row is committed) and stops in its callback.
    """
    from kombu import Exchange, Queue

    try:
        from djworker.broker_schemes import BrokerConnection
    except ImportError:  # djworker before broker_schemes: kombu's alias for django://
        from kombu import Connection as BrokerConnection

    exchange = Exchange("", type="direct")
    queue = Queue(queue_name, exchange=exchange, routing_key=queue_name)
    received: dict[int, float] = {}
    ready = threading.Event()
    stop = threading.Event()

    def consume() -> None:
        with BrokerConnection(os.environ["DJWORKER_BROKER_URL"]) as connection:

            def on_message(body: dict[str, int], message: object) -> None:
                received[body["n"]] = time.perf_counter()
                message.ack()  # type: ignore[attr-defined]

            with connection.Consumer([queue], callbacks=[on_message], prefetch_count=4):
                ready.set()
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        connection.drain_events(timeout=0.2)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    ready.wait(10)
    time.sleep(1.0)
    published: dict[int, float] = {}
    with BrokerConnection(os.environ["DJWORKER_BROKER_URL"]) as connection:
        producer = connection.Producer()
        began = time.perf_counter()
        for n in range(count):
            pause = began + n / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            producer.publish({"n": n}, exchange=exchange, routing_key=queue_name, declare=[queue])
            published[n] = time.perf_counter()
    deadline = time.monotonic() + 60
    while len(received) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(5)
    return [received[n] - published[n] for n in received]


def paced_run(task: object, queue: str, count: int, rate: float) -> list[float]:
    """Publish ``count`` tasks at ``rate`` per second; seconds from publish to start of each."""
    from djworker.broker import get_broker
    from djworker.models import TaskResult

    broker = get_broker()
    real_publish = broker.publish
    published_at: dict[str, float] = {}

    def timed_publish(envelope: dict[str, object], **options: object) -> None:
        published_at[str(envelope["id"])] = time.time()
        real_publish(envelope, **options)  # type: ignore[arg-type]

    broker.publish = timed_publish  # type: ignore[method-assign]
    try:
        began = time.perf_counter()
        for sent in range(count):
            pause = began + sent / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            task.apply_async(queue=queue)  # type: ignore[attr-defined]
    finally:
        broker.publish = real_publish  # type: ignore[method-assign]
    deadline = time.monotonic() + 60
    while TaskResult.objects.filter(id__in=list(published_at), started_at__isnull=False).count() < (
        count
    ):
        if time.monotonic() > deadline:
            raise SystemExit("the worker did not start every task within 60 s")
        time.sleep(0.05)
    rows = TaskResult.objects.filter(id__in=list(published_at)).values_list("id", "started_at")
    return [started.timestamp() - published_at[str(task_id)] for task_id, started in rows]


if __name__ == "__main__":
    main()
