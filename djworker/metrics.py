"""Prometheus metrics of the whole cluster, served by one view through ``prometheus-client``.

Nothing is counted in a process's memory: every figure is read, when Prometheus scrapes, from
what the workers already write (their ``Worker`` rows and the ``TaskResult`` rows) and from the
broker (``djworker.queues``). So the answer is the same from any web process, however many
workers and web processes there are, and no ``PROMETHEUS_MULTIPROC_DIR`` is needed. The
exposition format is written by ``prometheus_client`` (``pip install "djworker[metrics]"``).

Protected: a staff user's session, or ``Authorization: Bearer <token>`` with the token of
``settings.DJWORKER["METRICS_TOKEN"]`` (for Prometheus itself). docs/metrics.md has the list.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Mapping
from typing import Any

from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse

from djworker.option_values import TOKEN_SETTING, parse_token

#: upper bounds, in seconds, of the task duration histogram's buckets (prometheus_client's own)
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
INSTALL_HINT = 'the metrics view needs prometheus-client: pip install "djworker[metrics]"'


def configured_token(djworker_settings: Mapping[str, Any] | None = None) -> str | None:
    if djworker_settings is None:
        from django.conf import settings

        djworker_settings = getattr(settings, "DJWORKER", {})
    return parse_token(djworker_settings.get("METRICS_TOKEN"))


class ClusterCollector:
    """A ``prometheus_client`` collector reading djworker's tables and broker when scraped."""

    def collect(self) -> Iterator[Any]:
        yield from self.worker_metrics()
        yield from self.queue_metrics()
        yield from self.task_metrics()

    def worker_metrics(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from djworker.models import Worker, WorkerState

        up = GaugeMetricFamily(
            "djworker_worker_up",
            "1 for a worker whose heartbeat is fresh, 0 if stale (stopped and lost ones are "
            "absent)",
            labels=["worker"],
        )
        slots = GaugeMetricFamily(
            "djworker_pool_slots", "Pool slots now", labels=["worker", "pool"]
        )
        busy = GaugeMetricFamily(
            "djworker_busy_slots", "Slots running a task now", labels=["worker"]
        )
        processed = CounterMetricFamily(
            "djworker_worker_tasks_processed",
            "Tasks this worker process finished (resets when the worker starts again)",
            labels=["worker"],
        )
        failed = CounterMetricFamily(
            "djworker_worker_tasks_failed",
            "Tasks this worker process finished as failed (resets when it starts again)",
            labels=["worker"],
        )
        workers = Worker.objects.exclude(state__in=(WorkerState.STOPPED, WorkerState.LOST))
        for worker in workers.only(
            "hostname",
            "state",
            "last_heartbeat",
            "heartbeat_interval_s",
            "pool",
            "pool_size",
            "busy",
            "processed",
            "failed",
        ):
            name = worker.hostname
            up.add_metric([name], 1 if worker.current_state == WorkerState.ONLINE else 0)
            slots.add_metric([name, worker.pool], worker.pool_size)
            busy.add_metric([name], worker.busy)
            processed.add_metric([name], worker.processed)
            failed.add_metric([name], worker.failed)
        yield from (up, slots, busy, processed, failed)

    def queue_metrics(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from djworker.cli.status import queue_names, read_queues
        from djworker.models import Worker, WorkerState
        from djworker.queues import Unknown

        consumed = {
            name
            for queues in Worker.objects.exclude(
                state__in=(WorkerState.STOPPED, WorkerState.LOST)
            ).values_list("queues", flat=True)
            for name in queues.split(",")
            if name
        }
        stats, error = read_queues(lambda known: queue_names([], sorted(consumed), known))
        depth = GaugeMetricFamily(
            "djworker_queue_messages",
            "Messages in a queue by state (ready, delayed, reserved); absent when the broker "
            "cannot tell",
            labels=["queue", "state"],
        )
        age = GaugeMetricFamily(
            "djworker_queue_oldest_ready_age_seconds",
            "Seconds since the oldest ready message was published (0 when none is ready)",
            labels=["queue"],
        )
        for queue in stats:
            for state in ("ready", "delayed", "reserved"):
                value = getattr(queue, state)
                if not isinstance(value, Unknown):
                    depth.add_metric([queue.name, state], value)
            if not isinstance(queue.oldest_age_s, Unknown):
                age.add_metric([queue.name], queue.oldest_age_s or 0.0)
        readable = GaugeMetricFamily(
            "djworker_broker_readable", "1 when the broker answered this scrape's questions"
        )
        readable.add_metric([], 0 if error else 1)
        yield from (depth, age, readable)

    def task_metrics(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        from djworker.models import TaskResult, TaskStatus

        finished = CounterMetricFamily(
            "djworker_tasks_finished",
            "Tasks finished by name and status (SUCCESSFUL, FAILED), from the stored results; "
            "expired results leave the count, which Prometheus reads as a counter reset",
            labels=["task_name", "status"],
        )
        duration = HistogramMetricFamily(
            "djworker_task_duration_seconds",
            "Wall time of the finished runs by task name, from the stored results",
            labels=["task_name"],
        )
        timed = Q(wall_time_s__isnull=False)
        buckets = {
            f"le{i}": Count("id", filter=timed & Q(wall_time_s__lte=bound))
            for i, bound in enumerate(DURATION_BUCKETS_S)
        }
        rows = (
            TaskResult.objects.filter(status__in=(TaskStatus.SUCCESSFUL, TaskStatus.FAILED))
            .values("task_name")
            .annotate(
                successful=Count("id", filter=Q(status=TaskStatus.SUCCESSFUL)),
                failed=Count("id", filter=Q(status=TaskStatus.FAILED)),
                timed=Count("id", filter=timed),
                wall=Sum("wall_time_s"),
                **buckets,
            )
            .order_by("task_name")
        )
        for values in rows:
            row: dict[str, Any] = dict(values)
            name = row["task_name"]
            finished.add_metric([name, TaskStatus.SUCCESSFUL.value], row["successful"])
            finished.add_metric([name, TaskStatus.FAILED.value], row["failed"])
            counts = [(f"{bound:g}", row[f"le{i}"]) for i, bound in enumerate(DURATION_BUCKETS_S)]
            duration.add_metric(
                [name], [*counts, ("+Inf", row["timed"])], sum_value=float(row["wall"] or 0)
            )
        yield from (finished, duration)


def allowed(request: HttpRequest) -> bool:
    """A staff user's session, or the configured bearer token."""
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return True
    token = configured_token()
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return bool(
        token
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), token.encode())
    )


def metrics_view(request: HttpRequest) -> HttpResponse:
    """The metrics in Prometheus' text format; 403 without a staff session or the token."""
    if not allowed(request):
        response = HttpResponse(
            "djworker metrics need a staff user's session or the bearer token of "
            f"{TOKEN_SETTING}\n",
            status=403,
            content_type="text/plain",
        )
        response["WWW-Authenticate"] = 'Bearer realm="djworker metrics"'
        return response
    try:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    except ImportError:
        return HttpResponse(INSTALL_HINT + "\n", status=501, content_type="text/plain")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector())  # type: ignore[arg-type]
    response = HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
