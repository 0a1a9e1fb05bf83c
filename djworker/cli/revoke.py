"""``djworker revoke ID...``: stop waiting tasks from ever running (see ``revocation``)."""

from __future__ import annotations

import getpass
from typing import Any

from django.core.management.base import CommandParser, OutputWrapper

from djworker import revocation
from djworker.cli import EXIT_UNHEALTHY, Subcommand, fail
from djworker.exceptions import OperationRefused


def operator_name() -> str:
    """Who runs this command, for the rows it changes."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown user"
    return f"{user} (command line)"


class Revoke(Subcommand):
    help = (
        "Revoke waiting tasks (ready or delayed) by id: no worker will run them, including "
        "workers started later. A running task is refused: terminate it instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="+", metavar="ID")

    def run(self, options: dict[str, Any], out: OutputWrapper) -> None:
        refused = []
        who = operator_name()
        for task_id in dict.fromkeys(options["ids"]):
            try:
                revocation.revoke(task_id, by=who)
            except OperationRefused as exc:
                refused.append(str(exc))
                continue
            out.write(f"revoked {task_id}")
        if refused:
            raise fail("; ".join(refused), EXIT_UNHEALTHY)
