"""``djworker cleanup``: delete expired results, control commands and autoscale decisions now."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser, OutputWrapper

from djworker import conf, expiry, option_values
from djworker.cli import Subcommand
from djworker.cli.retry import age


class Cleanup(Subcommand):
    help = (
        "Delete finished results, control commands and autoscale decisions older than "
        "settings.DJWORKER['RESULT_EXPIRES'] (default 7 days), in small batches; the workers "
        "also do this on their own. --dry-run counts instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=age,
            metavar="AGE",
            help="use this age (90s, 15m, 1h, 2d) instead of RESULT_EXPIRES",
        )
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def run(self, options: dict[str, Any], out: OutputWrapper) -> None:
        if options["older_than"] is not None:
            expires_s: float | None = options["older_than"].total_seconds()
        else:
            expires_s = conf.read_settings().get(
                "result_expires_s", option_values.DEFAULT_RESULT_EXPIRES_S
            )
        if expires_s is None:
            out.write(
                "RESULT_EXPIRES is None: results are kept forever; nothing deleted "
                "(--older-than AGE deletes anyway)"
            )
            return
        swept = expiry.sweep(expires_s, dry_run=options["dry_run"])
        verb = "would delete" if options["dry_run"] else "deleted"
        out.write(
            f"{verb} {swept.results} result(s), {swept.commands} control command(s) and "
            f"{swept.scale_decisions} autoscale decision(s) older than {expires_s:g}s"
        )
