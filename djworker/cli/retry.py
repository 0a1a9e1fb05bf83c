"""``djworker retry``: send finished tasks again, by id or by a filter of failed ones."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta
from typing import Any

from django.core.management.base import CommandParser, OutputWrapper
from django.utils import timezone

from djworker import manual_retry
from djworker.cli import EXIT_UNHEALTHY, Subcommand, fail, queue_name
from djworker.exceptions import OperationRefused
from djworker.models.results import TaskResult, TaskStatus

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def age(text: str) -> timedelta:
    """An argparse type: ``90s``, ``15m``, ``1h`` or ``2d``."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if not found:
        raise argparse.ArgumentTypeError(
            f"expects a number and a unit (s, m, h or d) like 90s, 15m, 1h or 2d; got {text!r}"
        )
    return timedelta(seconds=float(found[1]) * _UNITS[found[2]])


class Retry(Subcommand):
    help = (
        "Send finished tasks again (same task, arguments, queue and priority) as new runs "
        "linked to the ones they retry: by id, or --failed with optional --task, --queue and "
        "--since filters."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", metavar="ID", help="task ids to retry")
        parser.add_argument(
            "--failed", action="store_true", help="retry the FAILED tasks the filters select"
        )
        parser.add_argument("--task", metavar="NAME", help="only tasks of this name")
        parser.add_argument("-Q", "--queue", type=queue_name, help="only tasks of this queue")
        parser.add_argument(
            "--since", type=age, metavar="AGE", help="only tasks that finished within AGE (1h)"
        )
        parser.add_argument(
            "--limit", type=int, default=1000, help="retry at most this many (default 1000)"
        )
        parser.add_argument("--dry-run", action="store_true", help="list, do not send")

    def run(self, options: dict[str, Any], out: OutputWrapper) -> None:
        ids: list[str] = options["ids"]
        if bool(ids) == bool(options["failed"]):
            raise fail("give task ids, or --failed with filters (not both)", 2)
        rows = TaskResult.objects.all()
        if options["failed"]:
            # Already retried rows are skipped: a second run of the command sends nothing new.
            rows = rows.filter(status=TaskStatus.FAILED, retried_as="")
            if options["task"]:
                rows = rows.filter(task_name=options["task"])
            if options["queue"]:
                rows = rows.filter(queue=options["queue"])
            if options["since"]:
                rows = rows.filter(finished_at__gte=timezone.now() - options["since"])
            selected = list(rows.order_by("finished_at")[: options["limit"]])
        else:
            by_id = rows.in_bulk(ids)
            missing = [i for i in ids if i not in by_id]
            if missing:
                raise fail(f"no task with id {', '.join(map(repr, missing))}", EXIT_UNHEALTHY)
            selected = [by_id[i] for i in dict.fromkeys(ids)]
        if not selected:
            out.write("no task matches")
            return
        refused = []
        for row in selected:
            if options["dry_run"]:
                reason = manual_retry.refusal(row)
                out.write(
                    f"would retry {row.id} {row.task_name}"
                    + (f" (refused: {reason})" if reason else "")
                )
                continue
            try:
                new_id = manual_retry.retry(row)
            except OperationRefused as exc:
                refused.append(str(exc))
                continue
            out.write(f"retried {row.id} as {new_id}")
        if refused:
            raise fail("; ".join(refused), EXIT_UNHEALTHY)
