"""``manage.py runworker``: validate options at the edge, resolve the config, run a Worker."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from djworker import conf, option_values
from djworker.concurrency.registry import alias_names
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


def _option(field: str) -> Callable[[str], Any]:
    """The parser of ``conf.OPTIONS``' entry for ``field``: one rule for every layer."""
    option = conf.OPTIONS_BY_FIELD[field]
    return _arg(option.parse, option.cli_flag)


class Command(BaseCommand):
    help = "Run a djworker worker: consume the queues and run tasks in the chosen pool."

    def get_version(self) -> str:
        """What ``--version`` prints: djworker's version (Django's own would say Django's)."""
        from djworker import __version__

        return __version__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-P",
            "--pool",
            type=_option("pool"),
            help=f"{alias_names()}, custom, or a module.path:Class (default: threads)",
        )
        parser.add_argument(
            "-c",
            "--concurrency",
            type=_arg(option_values.parse_positive_int, "--concurrency"),
            help="number of pool slots (default: the number of CPUs; 1 for solo)",
        )
        parser.add_argument(
            "--autoscale",
            type=_option("autoscale"),
            metavar="MIN,MAX",
            help="let the pool size follow demand between two bounds, in either order: 1,3",
        )
        parser.add_argument(
            "--autoscale-keepalive",
            dest="autoscale_keepalive_s",
            type=_option("autoscale_keepalive_s"),
            metavar="SECONDS",
            help="seconds without need before an autoscaled pool shrinks (default: 30)",
        )
        parser.add_argument(
            "--profile",
            "--config",  # the flag's former name, kept so existing command lines work
            dest="config_name",
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
        parser.add_argument(
            "-Q",
            "--queues",
            type=_option("queues"),
            help="comma-separated queues to consume (default: default)",
        )
        parser.add_argument(
            "-n",
            "--hostname",
            type=_option("hostname"),
            help="the worker's name, unique among running workers; %%h host, %%n its first "
            "label, %%d domain, %%i pid, %%%% a percent sign (default: djworker@%%h)",
        )
        parser.add_argument(
            "-l",
            "--loglevel",
            type=_option("loglevel"),
            help=f"one of {', '.join(option_values.LOG_LEVELS)} (default: INFO)",
        )
        parser.add_argument(
            "--prefetch-multiplier",
            type=_option("prefetch_multiplier"),
            help="messages reserved per pool slot; 0 means no limit (default: 4)",
        )
        parser.add_argument(
            "--max-tasks-per-child",
            type=_arg(option_values.parse_positive_int, "--max-tasks-per-child"),
            help="replace a pool process after this many tasks (prefork)",
        )
        parser.add_argument(
            "--max-memory-per-child",
            dest="max_memory_per_child_kib",
            type=_option("max_memory_per_child_kib"),
            metavar="SIZE",
            help="replace a pool process whose resident memory exceeds SIZE after its task: "
            "KiB, or a size such as 200MB (prefork)",
        )
        parser.add_argument(
            "--time-limit",
            dest="time_limit_s",
            type=_option("time_limit_s"),
            metavar="SECONDS",
            help="hard time limit for every task",
        )
        parser.add_argument(
            "--soft-time-limit",
            dest="soft_time_limit_s",
            type=_option("soft_time_limit_s"),
            metavar="SECONDS",
            help="soft time limit: raises SoftTimeLimitExceeded inside the task",
        )
        parser.add_argument(
            "--max-deliveries",
            type=_option("max_deliveries"),
            metavar="N",
            help="fail a message once N of its deliveries started without finishing (its "
            "process died); 0 means no cap (default: "
            f"{conf.DEFAULT_MAX_DELIVERIES}; a task's max_deliveries wins)",
        )
        parser.add_argument(
            "--broker",
            dest="broker_url",
            type=_option("broker_url"),
            help="broker URL, overriding settings.DJWORKER['BROKER_URL']",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from django.db import connections

        from djworker.control import profile_settings
        from djworker.worker import Worker

        cli = {field: options.get(field) for field in conf.OPTIONS_BY_FIELD}
        name = options["config_name"]
        try:
            admin = profile_settings(name, create=options["create_profile"])
            connections.close_all()
            config = conf.load_config(cli=cli, admin=admin, config_name=name)
            configure_logging(config.loglevel)
            self.ensure_patched(config.pool)
            worker = Worker(config, stdout=self.stdout)
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
        from djworker.concurrency import resolve_pool

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
