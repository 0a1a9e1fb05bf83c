"""One run: one implementation on one pool, from an empty database to its stopped worker.

1. The client publishes ``tasks`` no-ops one call at a time (the ``.delay()`` rate).
2. The worker starts on that backlog; the runner polls the finished count and times the no-ops
   from the first finished one to the last (worker start-up does not count), and samples the
   CPU of the worker's whole process group over the same span.
3. Into the now idle worker, the client sends ``probes`` latency probes paced at
   ``probe_rate`` per second; each writes its call-to-start wait to the sink.
4. The worker is stopped; the PostgreSQL sessions opened in the implementation's database
   from its start to its stop are counted (``pg_stat_database``), as they were over the
   timed span of the drain, per no-op. On one pool (``bulk_pool``),
   the client publishes ``bulk`` no-ops at once, where the implementation has a bulk API
   (nothing consumes them: the next run empties the tables).

Every phase has a deadline. A phase that misses it fails the run, which then records and prints
which task ids never finished and where each one sits.
"""

from __future__ import annotations

import json
import os
import select
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import redis

from benchmarks.compare import progress, workers
from benchmarks.compare.implementations import POOLS, Implementation
from benchmarks.compare.services import Services, django_env, reset, workdir

#: how often the runner counts finished no-ops (one count query per poll)
POLL_S = 0.02


@dataclass(frozen=True)
class Settings:
    tasks: int
    probes: int
    probe_rate: float
    bulk: int
    #: the pool whose runs also time the bulk publish (it does not depend on the pool)
    bulk_pool: str
    #: seconds the drain may take before the run counts as stalled
    deadline_s: float


class RunFailed(Exception):
    """A phase missed its deadline or a process died; the message says which and why."""


def execute(
    implementation: Implementation,
    pool: str,
    repeat: int,
    settings: Settings,
    services: Services,
    out: Path,
) -> dict[str, Any]:
    began = time.monotonic()
    queue = f"b{uuid.uuid4().hex[:12]}"
    run_id = f"r{repeat}-{implementation.name}-{pool}-{queue}"
    record: dict[str, Any] = {
        "run": run_id,
        "repeat": repeat,
        "implementation": implementation.name,
        "label": implementation.label,
        "broker": implementation.broker,
        "pool": pool,
        "concurrency": POOLS[pool],
        "tasks": settings.tasks,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load1": round(os.getloadavg()[0], 2),
        "status": "ok",
    }
    reset(services, implementation)
    env = {**django_env(services, implementation), "DJWORKER_BENCH_QUEUE": queue}
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    client = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.compare.client", implementation.kind],
        cwd=workdir(implementation),
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=(logs / f"{run_id}.client.log").open("wb"),
        text=True,
    )
    worker: subprocess.Popen[bytes] | None = None
    broker = (
        redis.Redis.from_url(services.redis_url(implementation.redis_db))
        if implementation.redis_db is not None
        else None
    )
    conn = psycopg.connect(services.dsn(implementation.database), autocommit=True)
    try:
        ids_file = logs / f"{run_id}.ids"
        answer = _ask(client, {"op": "publish", "count": settings.tasks, "ids": str(ids_file)}, 300)
        record["delay_calls_per_s"] = round(settings.tasks / answer["seconds"], 1)
        if answer.get("djworker_from"):
            record["djworker_from"] = answer["djworker_from"]
        ids = ids_file.read_text().split()
        sessions_before = sessions_opened(conn)
        worker = workers.start(implementation, pool, queue, env, logs / f"{run_id}.worker.log")
        phase = "drain"
        try:
            record.update(_drain(conn, implementation, worker, settings))
            phase = "probe"
            record.update(_probe(client, services, worker, settings, queue, logs / run_id))
        except RunFailed as failure:
            probe_ids = logs / f"{run_id}.probe-ids"
            if phase == "probe":
                ids = probe_ids.read_text().split() if probe_ids.exists() else []
            places = progress.locate(conn, broker, implementation, queue, ids)
            record.update(status="failed", failure=str(failure), unfinished=places)
            print(f"  FAILED {run_id}: {failure}\n{progress.summary(places)}", flush=True)
        record["worker_exit"] = workers.stop(worker)
        worker = None
        opened = sessions_opened(conn) - sessions_before
        record["pg_sessions_opened"] = opened
        if record["status"] == "ok" and settings.bulk and pool == settings.bulk_pool:
            answer = _ask(client, {"op": "bulk", "count": settings.bulk}, 300)
            if not answer.get("unsupported"):
                record["bulk_tasks_per_s"] = round(settings.bulk / answer["seconds"], 1)
    except RunFailed as failure:
        record.update(status="failed", failure=str(failure))
        print(f"  FAILED {run_id}: {failure}", flush=True)
    finally:
        if worker is not None:
            record["worker_exit"] = workers.stop(worker)
        if client.stdin is not None:
            client.stdin.close()
        try:
            client.wait(30)
        except subprocess.TimeoutExpired:
            client.kill()
            client.wait()
        conn.close()
    record["run_s"] = round(time.monotonic() - began, 1)
    return record


def _ask(client: subprocess.Popen[str], request: dict[str, Any], timeout_s: float) -> Any:
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write(json.dumps(request) + "\n")
    client.stdin.flush()
    ready, _, _ = select.select([client.stdout], [], [], timeout_s)
    line = client.stdout.readline() if ready else ""
    if not line:
        raise RunFailed(
            f"the client did not answer {request['op']!r} within {timeout_s:.0f} s"
            f" (exit code {client.poll()}); see its log"
        )
    answer = json.loads(line)
    if "error" in answer:
        raise RunFailed(answer["error"])
    return answer


def _drain(
    conn: psycopg.Connection[Any],
    implementation: Implementation,
    worker: subprocess.Popen[bytes],
    settings: Settings,
) -> dict[str, Any]:
    started = now = time.perf_counter()
    first_at, first_count, first_cpu, first_sessions = 0.0, 0, 0.0, 0
    finished = lambda: progress.finished(conn, implementation)  # noqa: E731
    for done, now in _watch(worker, finished, settings.tasks, settings.deadline_s, "no-ops"):
        if done and not first_at:
            first_at, first_count = now, done
            first_cpu, first_sessions = group_cpu_seconds(worker.pid), sessions_opened(conn)
    timed = settings.tasks - first_count
    figures: dict[str, Any] = {"drain_with_startup_s": round(now - started, 3)}
    if timed >= 10 and now > first_at:
        figures["tasks_per_s"] = round(timed / (now - first_at), 1)
        cpu = group_cpu_seconds(worker.pid) - first_cpu
        figures["worker_cpu_ms_per_task"] = round(cpu * 1000 / timed, 3)
        sessions = sessions_opened(conn) - first_sessions
        figures["pg_sessions_per_task"] = round(sessions / timed, 4)
    return figures


def _watch(
    worker: subprocess.Popen[bytes],
    count: Callable[[], int],
    target: int,
    deadline_s: float,
    what: str,
) -> Iterator[tuple[int, float]]:
    """Poll ``count()`` until it reaches ``target``, yielding it and the time of each poll.

    Raises ``RunFailed`` if the worker exits first, or if ``deadline_s`` passes: a stall.
    """
    started = time.perf_counter()
    while True:
        done, now = count(), time.perf_counter()
        yield done, now
        if done >= target:
            return
        if worker.poll() is not None:
            raise RunFailed(
                f"the worker exited ({worker.returncode}) with {done} of {target} {what} done"
            )
        if now - started > deadline_s:
            raise RunFailed(
                f"stalled: {done} of {target} {what} done by the {deadline_s:.0f} s deadline"
            )
        time.sleep(POLL_S)


def _probe(
    client: subprocess.Popen[str],
    services: Services,
    worker: subprocess.Popen[bytes],
    settings: Settings,
    queue: str,
    stem: Path,
) -> dict[str, Any]:
    if not settings.probes:
        return {}
    key = f"{queue}-waits"
    ids_file = Path(f"{stem}.probe-ids")
    budget = settings.probes / settings.probe_rate + 60
    _ask(
        client,
        {
            "op": "probe",
            "count": settings.probes,
            "rate": settings.probe_rate,
            "key": key,
            "ids": str(ids_file),
        },
        budget,
    )
    sink = redis.Redis.from_url(services.sink_url)
    for _ in _watch(worker, lambda: int(sink.llen(key)), settings.probes, 30, "probes"):
        pass
    waits_ms = sorted(float(raw) * 1000 for raw in sink.lrange(key, 0, -1))
    figures: dict[str, Any] = {"probes": len(waits_ms), "probe_p50_ms": statistics.median(waits_ms)}
    if len(waits_ms) >= 2:
        figures["probe_p99_ms"] = statistics.quantiles(waits_ms, n=100)[98]
    return {name: round(value, 3) for name, value in figures.items()}


def sessions_opened(conn: psycopg.Connection[Any]) -> int:
    """PostgreSQL sessions opened so far in the connection's database (PostgreSQL 14+).

    Each implementation has a database of its own, so the difference across a run is the
    sessions its worker (and its client, while the worker runs) opened. A backend reports its
    connect when it flushes its statistics: at the end of its first transaction, and at the
    latest when it exits (the worker is stopped before the run's last reading).
    """
    row = conn.execute(
        "select sessions from pg_stat_database where datname = current_database()"
    ).fetchone()
    return int(row[0]) if row else 0


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes of a process group (Linux ``/proc``).

    The worker is started in a session of its own, so this covers its pool children too. Unlike
    tasks/s, it hardly moves when other processes load the machine.
    """
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
