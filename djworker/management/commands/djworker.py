"""``manage.py djworker COMMAND``: the operator commands (status, purge, ...).

Each command lives in ``djworker/cli/``; this module only builds the parser and dispatches.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

import djworker
from djworker import cli


class Command(BaseCommand):
    help = (
        "Operate djworker: see workers and queues, purge queues, and more. "
        "Run 'manage.py djworker COMMAND --help' for one command."
    )

    def get_version(self) -> str:
        return djworker.__version__

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
        for name in cli.SUBCOMMANDS:
            command = cli.load(name)
            command.add_arguments(
                commands.add_parser(name, help=command.help, description=command.help)
            )

    def handle(self, *args: Any, **options: Any) -> None:
        cli.load(options["command"]).run(options, self.stdout)
