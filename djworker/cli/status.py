"""``djworker status``: live workers and queue depths; a health probe by its exit code.

Exit codes: 0 when every asked-for queue, profile and worker name has a live worker (any live
worker at all when nothing is asked for); 1 when one has none; 3 when the broker could not be
read (its queue figures are then missing; ``--workers-only`` does not read them).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser, OutputWrapper
from django.utils import timezone

from djworker import conf, stuck_results
from djworker.broker import get_broker, redact_url
from djworker.cli import EXIT_BROKER_UNREACHABLE, EXIT_UNHEALTHY, Subcommand, fail, queue_name
from djworker.durations import for_people
from djworker.models import TaskResult, TaskStatus, Worker, WorkerProfile, WorkerState
from djworker.queues import QueueStats, Unknown, inspector_for


def queues_of(worker: Worker) -> list[str]:
    return [name for name in worker.queues.split(",") if name]


def profile_of(worker: Worker) -> str:
    return worker.profile.name if worker.profile is not None else ""


def queue_names(workers: list[Worker], asked: list[str], broker_known: list[str]) -> list[str]:
    """The queues worth showing: asked for, consumed, named by a profile, known to the broker,
    or named by a waiting or running result row (only the names come from rows, never the
    figures)."""
    names: dict[str, None] = dict.fromkeys(asked)
    for worker in workers:
        names.update(dict.fromkeys(queues_of(worker)))
    for profile_queues in WorkerProfile.objects.values_list("queues", flat=True):
        names.update(dict.fromkeys(q for q in profile_queues.split(",") if q))
    names.update(dict.fromkeys(broker_known))
    unfinished = TaskResult.objects.filter(status__in=(TaskStatus.READY, TaskStatus.RUNNING))
    names.update(dict.fromkeys(unfinished.values_list("queue", flat=True).distinct()))
    names.setdefault(conf.DEFAULT_QUEUE, None)
    return list(names)


def read_queues(names_for: Any) -> tuple[list[QueueStats], str]:
    """Queue figures from the broker, or an empty list and why the broker could not answer."""
    broker = get_broker()
    inspector = inspector_for(broker)
    try:
        return inspector.stats(names_for(inspector.known_queues())), ""
    except Exception as exc:
        return [], f"{redact_url(broker.url)}: {type(exc).__name__}: {exc}"


class Status(Subcommand):
    help = (
        "Show live workers (pool, size, busy, heartbeat age) and queue depths; exit 1 when no "
        "live worker serves a given --queue, --profile or --hostname (any worker if none given)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-Q",
            "--queue",
            action="append",
            default=[],
            type=queue_name,
            help="require a live worker consuming this queue (repeatable)",
        )
        parser.add_argument(
            "--profile",
            "--config",  # the flag's former name, kept as an alias
            dest="profile",
            action="append",
            default=[],
            metavar="PROFILE",
            help="require a live worker following this profile (repeatable)",
        )
        parser.add_argument(
            "-n",
            "--hostname",
            action="append",
            default=[],
            help="require this worker to be live (repeatable)",
        )
        parser.add_argument(
            "--workers-only",
            action="store_true",
            help="do not read queue depths from the broker (a probe that needs only the database)",
        )
        parser.add_argument("--json", action="store_true", help="print one JSON document")

    def run(self, options: dict[str, Any], out: OutputWrapper) -> None:
        now = timezone.now()
        workers = list(Worker.objects.exclude(state=WorkerState.STOPPED).select_related("profile"))
        live = [w for w in workers if w.current_state == WorkerState.ONLINE]
        missing = [
            *(f"queue {q!r}" for q in options["queue"] if not any(q in queues_of(w) for w in live)),
            *(
                f"profile {c!r}"
                for c in options["profile"]
                if not any(profile_of(w) == c for w in live)
            ),
            *(
                f"worker {h!r}"
                for h in options["hostname"]
                if not any(w.hostname == h for w in live)
            ),
        ]
        asked = bool(options["queue"] or options["profile"] or options["hostname"])
        queues: list[QueueStats] = []
        broker_error = ""
        if not options["workers_only"]:
            queues, broker_error = read_queues(
                lambda known: queue_names(live, options["queue"], known)
            )
        stuck = stuck_results.compare(queues, now=now)
        rows = [
            {
                "hostname": w.hostname,
                "state": w.current_state,
                "profile": profile_of(w),
                "pool": w.pool,
                "size": w.pool_size,
                "busy": w.busy,
                "paused": w.paused,
                "queues": queues_of(w),
                "heartbeat_age_s": round((now - w.last_heartbeat).total_seconds(), 1),
            }
            for w in workers
        ]
        if options["json"]:
            document = {
                "workers": rows,
                "queues": [q.as_dict() for q in queues],
                "broker_error": broker_error or None,
                "missing": missing,
                "stuck_results": [
                    {
                        "queue": q.queue,
                        "without_message": q.without_message,
                        "oldest_ids": q.oldest_ids,
                    }
                    for q in stuck
                ],
            }
            out.write(json.dumps(document, indent=2))
        else:
            self._write_text(out, rows, queues, broker_error, options["workers_only"])
            for queue in stuck:
                out.write(f"warning: {queue.describe()}")
        if missing:
            raise fail("no live worker for " + ", ".join(missing), EXIT_UNHEALTHY)
        if not asked and not live:
            raise fail("no live worker", EXIT_UNHEALTHY)
        if broker_error:
            raise fail(f"could not read the queues from {broker_error}", EXIT_BROKER_UNREACHABLE)

    def _write_text(
        self,
        out: OutputWrapper,
        rows: list[dict[str, Any]],
        queues: list[QueueStats],
        broker_error: str,
        workers_only: bool,
    ) -> None:
        out.write(f"workers ({len(rows)} not stopped):")
        for row in rows:
            out.write(
                f"  {row['hostname']}  {row['state']}{' (paused)' if row['paused'] else ''}  "
                f"pool={row['pool']} size={row['size']} busy={row['busy']}  "
                f"heartbeat {row['heartbeat_age_s']}s ago  profile={row['profile'] or '-'}  "
                f"queues={','.join(row['queues'])}"
            )
        if workers_only:
            return
        if broker_error:
            out.write(f"queues: unknown, the broker could not be read ({broker_error})")
            return
        out.write("queues (from the broker):")
        width = max((len(q.name) for q in queues), default=0)
        for q in queues:
            age = (
                q.oldest_age_s
                if isinstance(q.oldest_age_s, Unknown)
                else for_people(q.oldest_age_s)
            )
            out.write(
                f"  {q.name:<{width}}  ready={q.ready} delayed={q.delayed} "
                f"reserved={q.reserved} oldest={age} consumers={q.consumers}"
            )
