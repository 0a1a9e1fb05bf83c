"""``djworker purge QUEUE...``: delete the waiting messages of queues, after confirmation."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import CommandParser, OutputWrapper

from djworker.broker import get_broker, redact_url
from djworker.cli import EXIT_BROKER_UNREACHABLE, Subcommand, fail, queue_name
from djworker.queues import inspector_for


class Purge(Subcommand):
    help = (
        "Delete every message waiting in the given queues (ready and delayed); messages a "
        "worker holds are left to it. Asks for confirmation unless --force."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("queues", nargs="+", metavar="QUEUE", type=queue_name)
        parser.add_argument("-f", "--force", action="store_true", help="do not ask first")

    def run(self, options: dict[str, Any], out: OutputWrapper) -> None:
        queues: list[str] = list(dict.fromkeys(options["queues"]))
        broker = get_broker()
        where = redact_url(broker.url)
        if not options["force"]:
            if not sys.stdin.isatty():
                raise fail(
                    "purge asks for confirmation on a terminal; pass --force to purge "
                    f"{', '.join(queues)} without asking",
                    2,
                )
            answer = input(
                f"Delete every waiting message of {', '.join(queues)} on {where}? [y/N] "
            )
            if answer.strip().lower() not in ("y", "yes"):
                out.write("nothing purged")
                return
        inspector = inspector_for(broker)
        for queue in queues:
            try:
                purged = inspector.purge(queue)
            except Exception as exc:
                raise fail(
                    f"could not purge {queue!r} on {where}: {type(exc).__name__}: {exc}",
                    EXIT_BROKER_UNREACHABLE,
                ) from exc
            out.write(f"purged {purged} message(s) from {queue}")
