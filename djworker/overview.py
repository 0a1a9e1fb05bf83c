"""The cluster at a glance: what the admin dashboard and its JSON endpoint show.

Each part is a fixed number of queries whatever the number of result rows: the workers (one
query, with their profiles), the running tasks (a count and the oldest few), the queues (from
the broker, through ``djworker.queues``), and the throughput (``djworker.throughput``).
Everything returned is JSON-able, so the page and the endpoint share it.
"""

from __future__ import annotations

import functools
from collections import Counter
from datetime import datetime
from typing import Any

from django.utils import timezone

from djworker.concurrency.lookup import resolve_pool
from djworker.concurrency.registry import POOLS
from djworker.models import TaskResult, TaskStatus, Worker, WorkerState

#: rows of each table sent at most; the totals say how many there are
MAX_WORKERS = 200
MAX_RUNNING = 50
#: the order workers are listed in: the ones needing a look first
STATE_ORDER: dict[str, int] = {"stale": 0, "lost": 1, "online": 2, "stopped": 3}
#: states of a worker that runs nothing any more (lost: another worker settled its tasks)
GONE = frozenset({WorkerState.STOPPED, WorkerState.LOST})


#: packages a web process may import to read a pool's flags: eventlet warns on import that it
#: is deprecated, and a custom pool's module is never imported here (docs/security.md)
QUIET_PACKAGES = ("", "billiard")


@functools.lru_cache(maxsize=32)
def pool_can_terminate(pool: str) -> bool:
    """Whether to offer a terminate button for a task running on ``pool``.

    False only where this process knows the pool cannot stop one task (its
    ``supports_terminate``: solo and threads); for green and custom pools, whose modules are
    not imported here, the worker judges, and a refusal is the command's outcome.
    """
    if pool in POOLS and POOLS[pool].package in QUIET_PACKAGES:
        try:
            return resolve_pool(pool).supports_terminate
        except Exception:  # a broken install: offer nothing
            return False
    return bool(pool)


def _autoscale(worker: Worker) -> str:
    for field, value, _layer in worker.settings or ():
        if field == "autoscale" and value:
            return f"{value[0]}..{value[1]}"
    return ""


def _profile_applied(worker: Worker) -> str:
    if worker.profile is None:
        return "-"
    if worker.applied_revision == worker.profile.revision:
        return "yes"
    return "no" + (f": {worker.profile_error}" if worker.profile_error else "")


def worker_row(worker: Worker, *, now: datetime) -> dict[str, Any]:
    """One worker's figures as the dashboard and the worker page show them."""
    state = worker.current_state
    return {
        "id": worker.pk,
        "hostname": worker.hostname,
        "state": state,
        "pool": worker.pool,
        "pool_size": worker.pool_size,
        "busy": worker.busy if state not in GONE else 0,
        "autoscale": _autoscale(worker),
        "paused": worker.paused,
        "queues": worker.queues,
        "heartbeat_age_s": round((now - worker.last_heartbeat).total_seconds(), 1),
        "rss_mib": round(worker.rss_kib / 1024, 1),
        "processed": worker.processed,
        "failed": worker.failed,
        "profile": worker.profile.name if worker.profile else "",
        "profile_applied": _profile_applied(worker),
    }


def worker_rows(*, now: datetime) -> tuple[list[dict[str, Any]], int]:
    """Every worker (stale and lost first, stopped last) as the dashboard lists it, and their
    count."""
    workers = list(
        Worker.objects.select_related("profile")
        .defer("scale_events", "pinned")
        .order_by("hostname")[:MAX_WORKERS]
    )
    total = Worker.objects.count()
    rows = [worker_row(worker, now=now) for worker in workers]
    rows.sort(key=lambda r: (STATE_ORDER.get(r["state"], 9), r["hostname"]))
    return rows, total


def running_tasks(
    *, now: datetime, workers: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], int]:
    """The tasks running now, longest-running first, and how many run in all."""
    running = TaskResult.objects.filter(status=TaskStatus.RUNNING)
    rows: list[dict[str, Any]] = [
        dict(row)
        for row in running.order_by("started_at").values(
            "id",
            "task_name",
            "queue",
            "worker_hostname",
            "started_at",
            "progress_done",
            "progress_total",
            "progress_note",
        )[:MAX_RUNNING]
    ]
    total = running.count()
    pools = {w["hostname"]: (w["pool"], w["state"]) for w in workers}
    for row in rows:
        started = row.pop("started_at")
        done = row.pop("progress_done")
        reported = {
            "done": done,
            "total": row.pop("progress_total"),
            "note": row.pop("progress_note"),
        }
        # what the task reported with djworker.progress(), if it did (djworker.task_progress)
        row["progress"] = None if done is None else reported
        row["running_for_s"] = round((now - started).total_seconds(), 1) if started else None
        pool, state = pools.get(row["worker_hostname"], ("", ""))
        row["can_terminate"] = state == WorkerState.ONLINE and pool_can_terminate(pool)
    return rows, total


def queue_rows(workers: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """Per queue, from the broker (``djworker.queues``): ready, delayed and reserved messages,
    the age of the oldest ready one, and the workers consuming it; and why the broker could
    not be read ("" when it could).

    The queues listed are those consumed by a worker, named by a profile, known to the broker,
    and ``default``. A figure the broker cannot give is "unknown".
    """
    from djworker.cli.status import queue_names, read_queues

    consuming: Counter[str] = Counter()
    for worker in workers:
        if worker["state"] not in GONE:
            consuming.update(filter(None, worker["queues"].split(",")))
    stats, error = read_queues(lambda known: queue_names([], list(consuming), known))
    rows = [{**q.as_dict(), "workers": consuming.get(q.name, 0)} for q in stats]
    return sorted(rows, key=lambda q: q["name"]), error


def snapshot(*, see_workers: bool, see_tasks: bool, now: datetime | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, limited to what the user may see."""
    from djworker import throughput

    now = now or timezone.now()
    data: dict[str, Any] = {"generated_at": now.isoformat()}
    workers: list[dict[str, Any]] = []
    if see_workers:
        workers, total = worker_rows(now=now)
        data["workers"] = workers
        data["workers_total"] = total
        data["totals"] = {
            "online": sum(w["state"] == WorkerState.ONLINE for w in workers),
            "stale": sum(w["state"] == WorkerState.STALE for w in workers),
            "lost": sum(w["state"] == WorkerState.LOST for w in workers),
            "slots": sum(w["pool_size"] for w in workers if w["state"] not in GONE),
            "busy": sum(w["busy"] for w in workers),
        }
        data["queues"], data["broker_error"] = queue_rows(workers)
    if see_tasks:
        running, running_total = running_tasks(now=now, workers=workers)
        data["running"] = running
        data["running_total"] = running_total
        series = throughput.per_minute(now=now)
        data["throughput"] = series.as_json()
        data["throughput_svg"] = throughput.svg(series)
    return data
