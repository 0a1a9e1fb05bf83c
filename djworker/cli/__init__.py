"""The operator commands behind ``manage.py djworker COMMAND``: one module per command.

``management/commands/djworker.py`` is thin: it builds the argument parser from this registry
and hands the parsed options to the chosen ``Subcommand``. Modules are imported only when
their command runs.
"""

from __future__ import annotations

import argparse
import importlib
from abc import ABC, abstractmethod
from typing import Any

from django.core.management.base import CommandError, CommandParser, OutputWrapper

#: command name -> "module:Class"
SUBCOMMANDS: dict[str, str] = {
    "status": "djworker.cli.status:Status",
    "cleanup": "djworker.cli.cleanup:Cleanup",
    "purge": "djworker.cli.purge:Purge",
    "inspect": "djworker.cli.inspect:Inspect",
    "enqueue": "djworker.cli.enqueue:Enqueue",
    "retry": "djworker.cli.retry:Retry",
    "revoke": "djworker.cli.revoke:Revoke",
    "advise": "djworker.cli.advise:Advise",
}

#: exit codes shared by the commands (argparse itself exits 2 on a usage error)
EXIT_UNHEALTHY = 1
EXIT_BROKER_UNREACHABLE = 3


class Subcommand(ABC):
    """One operator command: its arguments and what it does with them."""

    help: str = ""

    @abstractmethod
    def add_arguments(self, parser: CommandParser) -> None:
        """Declare the command's own arguments."""

    @abstractmethod
    def run(self, options: dict[str, Any], out: OutputWrapper) -> None:
        """Do the work, writing to ``out``; raise ``CommandError`` for a non-zero exit."""


def load(name: str) -> Subcommand:
    module_name, _, class_name = SUBCOMMANDS[name].partition(":")
    cls: type[Subcommand] = getattr(importlib.import_module(module_name), class_name)
    return cls()


def fail(message: str, code: int = EXIT_UNHEALTHY) -> CommandError:
    """The error to raise for a non-zero exit: one line, the exit code given."""
    return CommandError(message, returncode=code)


def queue_name(text: str) -> str:
    """An argparse type: a queue name by djworker's one rule (``queue_name_error``)."""
    from djworker import option_values

    error = option_values.queue_name_error(text)
    if error:
        raise argparse.ArgumentTypeError(error)
    return text
