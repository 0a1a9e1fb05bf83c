"""``djworker inspect HOSTNAME``: one worker's settings with their layers, running tasks and
recent control commands, from its row and the result table."""

from __future__ import annotations

import difflib
import json
from typing import Any

from django.core.management.base import CommandParser, OutputWrapper
from django.utils import timezone

from djworker.cli import EXIT_UNHEALTHY, Subcommand, fail
from djworker.durations import for_people
from djworker.models import ControlCommand, TaskResult, TaskStatus, Worker

RECENT_COMMANDS = 10


class Inspect(Subcommand):
    help = (
        "Show one worker: its state and pool, each setting with the layer that set it, the "
        "tasks it is running and its latest control commands."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("hostname", metavar="HOSTNAME", help="the worker's name (-n)")
        parser.add_argument("--json", action="store_true", help="print one JSON document")

    def run(self, options: dict[str, Any], out: OutputWrapper) -> None:
        name = options["hostname"]
        worker = Worker.objects.select_related("profile").filter(hostname=name).first()
        if worker is None:
            names = list(Worker.objects.values_list("hostname", flat=True)[:1000])
            close = difflib.get_close_matches(name, names, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise fail(f"no worker named {name!r}{hint}", EXIT_UNHEALTHY)
        now = timezone.now()
        running = list(
            TaskResult.objects.filter(status=TaskStatus.RUNNING, worker_hostname=name)
            .order_by("started_at")
            .values("id", "task_name", "queue", "started_at", "progress_done", "progress_total")
        )
        commands = list(
            ControlCommand.objects.filter(worker=worker)
            .order_by("-created_at")
            .select_related("requested_by")[:RECENT_COMMANDS]
        )
        document: dict[str, Any] = {
            "hostname": worker.hostname,
            "state": worker.current_state,
            "pid": worker.pid,
            "profile": worker.profile.name if worker.profile is not None else "",
            "pool": worker.pool,
            "size": worker.pool_size,
            "busy": worker.busy,
            "paused": worker.paused,
            "queues": [q for q in worker.queues.split(",") if q],
            "processed": worker.processed,
            "failed": worker.failed,
            "heartbeat_age_s": round((now - worker.last_heartbeat).total_seconds(), 1),
            "settings": [
                {"name": field, "value": value, "layer": layer}
                for field, value, layer in worker.settings
            ],
            "running": [
                {
                    **row,
                    "started_at": row["started_at"].isoformat() if row["started_at"] else None,
                    "running_s": round((now - row["started_at"]).total_seconds(), 1)
                    if row["started_at"]
                    else None,
                }
                for row in running
            ],
            "commands": [
                {
                    "at": c.created_at.isoformat(),
                    "by": str(c.requested_by or ""),
                    "what": c.asked_for,
                    "status": c.status,
                    "message": c.message,
                }
                for c in commands
            ],
        }
        if options["json"]:
            out.write(json.dumps(document, indent=2, default=str))
            return
        out.write(
            f"{worker.hostname}  {document['state']}  pid={worker.pid}  pool={worker.pool} "
            f"size={worker.pool_size} busy={worker.busy}  processed={worker.processed} "
            f"failed={worker.failed}  heartbeat {for_people(document['heartbeat_age_s'])} ago"
        )
        out.write("settings (value, and the layer that set it):")
        for setting in document["settings"]:
            out.write(f"  {setting['name']:<26} {setting['value']!s:<30} {setting['layer']}")
        out.write(f"running ({len(running)}):")
        for row in document["running"]:
            done = (
                f"  progress {row['progress_done']}/{row['progress_total']}"
                if row["progress_done"] is not None
                else ""
            )
            out.write(
                f"  {row['id']}  {row['task_name']}  queue={row['queue']}  "
                f"for {for_people(row['running_s'])}{done}"
            )
        out.write(f"recent commands ({len(commands)}):")
        for c in document["commands"]:
            out.write(f"  {c['at']}  {c['by'] or '-'}  {c['what']}  {c['status']}: {c['message']}")
