"""``manage.py runworker``: validate options at the edge, resolve the settings, run a Worker."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from djworker import conf, option_values
from djworker.exceptions import ConfigurationError


def _arg(parse: Callable[..., Any], flag: str) -> Callable[[str], Any]:
    """Adapt a ``conf`` parser to argparse, so bad values are refused with its message."""

    def convert(text: str) -> Any:
        try:
            return parse(text, name=flag)
        except ConfigurationError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = flag  # argparse names the type in some errors
    return convert


class Command(BaseCommand):
    help = "Run a djworker worker: consume the queues and run tasks in the chosen pool."

    def get_version(self) -> str:
        """What ``--version`` prints: djworker's version (Django's own would say Django's)."""
        from djworker import __version__

        return __version__

    def add_arguments(self, parser: CommandParser) -> None:
        # One argument per entry of conf.OPTIONS, parsed by the entry's parser.
        for option in conf.OPTIONS:
            flags = [option.short_flag] if option.short_flag else []
            parser.add_argument(
                *flags,
                option.cli_flag,
                dest=option.field,
                type=_arg(option.cli_parse or option.parse, option.cli_flag),
                metavar=option.metavar,
                help=option.help,
            )
        parser.add_argument(
            "--profile",
            "--config",  # the flag's former name, kept so existing command lines work
            dest="profile_name",
            default=conf.DEFAULT_PROFILE,
            type=_arg(option_values.parse_profile_name, "--profile"),
            metavar="NAME",
            help="the worker profile (admin) to follow live; it must exist, except "
            f"{conf.DEFAULT_PROFILE!r}, which is created if missing (default: "
            f"{conf.DEFAULT_PROFILE}). --config is an alias",
        )
        parser.add_argument(
            "--create-profile",
            "--create-config",
            dest="create_profile",
            action="store_true",
            help="create the --profile worker profile with the defaults if it does not exist "
            "(--create-config is an alias)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from django.db import connections

        from djworker.control import profile_settings
        from djworker.worker import Worker

        cli = {field: options.get(field) for field in conf.OPTIONS_BY_FIELD}
        name = options["profile_name"]
        try:
            admin = profile_settings(name, create=options["create_profile"])
            connections.close_all()
            settings = conf.load_config(cli=cli, admin=admin, profile_name=name)
            configure_logging(settings.loglevel)
            self.ensure_patched(settings.pool)
            worker = Worker(settings, stdout=self.stdout)
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        try:
            code = worker.run()
        except ConfigurationError as exc:  # found only when the pool starts (e.g. memory limits)
            raise CommandError(str(exc)) from exc
        if code:
            raise SystemExit(code)

    def ensure_patched(self, pool: str) -> None:
        """Start again through ``python -m djworker`` if a green pool finds us unpatched."""
        from djworker import green
        from djworker.concurrency.lookup import resolve_pool

        # A missing gevent/eventlet package is reported here, naming the extra to install.
        resolve_pool(pool)
        if pool in green.GREEN and green.patched != pool:
            self.stderr.write(
                f"djworker: starting again through `python -m djworker` so {pool} can patch the "
                "standard library before Django is imported"
            )
            green.reexec_patched(pool, sys.argv)


def configure_logging(level: str) -> None:
    """Apply --loglevel; give djworker's logger a handler if the project set none."""
    djworker_logger = logging.getLogger("djworker")
    djworker_logger.setLevel(level)
    if not djworker_logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("[%(asctime)s %(levelname)s/%(processName)s] %(name)s: %(message)s")
        )
        djworker_logger.addHandler(handler)
