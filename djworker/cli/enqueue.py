"""``djworker enqueue TASK_NAME``: publish a run of a registered task from the shell."""

from __future__ import annotations

import argparse
import difflib
import json
from typing import Any

from django.core.management.base import CommandParser, OutputWrapper

from djworker.cli import Subcommand, fail, queue_name
from djworker.exceptions import ConfigurationError
from djworker.task_definition import registry


def json_of(kind: type) -> Any:
    """An argparse type: JSON text decoding to ``kind`` (a list or a dict)."""

    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"is not JSON ({exc}): {text!r}") from None
        if not isinstance(value, kind):
            raise argparse.ArgumentTypeError(
                f"expects a JSON {'array' if kind is list else 'object'}; got {text!r}"
            )
        return value

    parse.__name__ = "JSON"
    return parse


class Enqueue(Subcommand):
    help = "Publish a run of a registered task with JSON arguments; prints its id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task", metavar="TASK_NAME")
        parser.add_argument(
            "--args",
            dest="task_args",  # Django's call_command takes "args" for itself
            type=json_of(list),
            default=[],
            help='JSON array: [1, "a"]',
        )
        parser.add_argument(
            "--kwargs",
            dest="task_kwargs",
            type=json_of(dict),
            default={},
            help='JSON object: {"x": 1}',
        )
        parser.add_argument("-Q", "--queue", type=queue_name, help="the task's queue by default")
        parser.add_argument("--countdown", type=float, metavar="SECONDS", help="run no sooner")
        parser.add_argument("--priority", type=int, help="0-9, higher runs first")

    def run(self, options: dict[str, Any], out: OutputWrapper) -> None:
        name = options["task"]
        task = registry.get(name)
        if task is None:
            close = difflib.get_close_matches(name, list(registry), n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise fail(f"no registered task named {name!r}{hint}", 2)
        countdown = options["countdown"]
        if countdown is not None and not 0 <= countdown <= 365 * 86400:
            raise fail(f"--countdown expects 0 to 31536000 seconds; got {countdown!r}", 2)
        try:
            result = task.apply_async(
                options["task_args"],
                options["task_kwargs"],
                queue=options["queue"],
                countdown=countdown,
                priority=options["priority"],
            )
        except (ConfigurationError, TypeError, ValueError) as exc:
            raise fail(f"not enqueued: {exc}", 2) from exc
        out.write(result.id)
