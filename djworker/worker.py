"""The worker: lifecycle, OS signals and the control tick around one consumer and one pool.

Signal handlers only set flags. The first SIGTERM/SIGINT asks for a warm shutdown (take no more
work, let running tasks finish and acknowledge them, exit 0); a second asks for a cold one
(stop now; the broker delivers unacknowledged work again later).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

from django.db import close_old_connections, connections

from djworker import __version__, broker_durability, nodename, signals
from djworker.broker import Broker, redact_url, set_broker
from djworker.concurrency import resolve_pool
from djworker.concurrency.base import BasePool
from djworker.conf import DEFAULT, WorkerSettings, explain, spelled
from djworker.consumer import Consumer
from djworker.exceptions import ConfigurationError
from djworker.log_safety import get_logger
from djworker.task_definition import registry

if TYPE_CHECKING:
    from djworker.control import ControlPlane

logger = get_logger(__name__)

COLD_EXIT_CODE = 1
#: pause before reconnecting, so a broker that keeps failing is not hammered
RECONNECT_PAUSE_S = 1.0


def describe_connection_reuse() -> str:
    """How task runs get their database connection, with a hint when each opens a new one."""
    options = connections["default"].settings_dict
    if options.get("OPTIONS", {}).get("pool"):
        return "connections from Django's pool (OPTIONS['pool'])"
    max_age = options.get("CONN_MAX_AGE", 0)
    if max_age is None or max_age > 0:
        return f"connections reused across tasks (CONN_MAX_AGE={max_age})"
    return (
        "a new connection for every task (CONN_MAX_AGE=0); set CONN_MAX_AGE or "
        "OPTIONS['pool'] to reuse connections"
    )


def describe_limits(pool: BasePool) -> str:
    """Which limits the pool enforces, for the banner: what is not enforced is said too."""
    limits = pool.limits()
    enforced = [name for name, yes in limits.items() if yes]
    ignored = [name for name, yes in limits.items() if not yes]
    text = f"this pool enforces {', '.join(enforced) or 'no limit'}"
    return f"{text}; not {', '.join(ignored)}" if ignored else text


def unenforced_task_limits(pool: BasePool) -> list[str]:
    """A warning for registered tasks whose own time limits this pool cannot enforce."""
    warnings = []
    for option, supported in (
        ("time_limit", pool.supports_hard_time_limit),
        ("soft_time_limit", pool.supports_soft_time_limit),
    ):
        names = sorted(name for name, task in registry.items() if getattr(task, option))
        if names and not supported:
            warnings.append(
                f"the {pool.describe()} pool does not enforce {option}, set by "
                f"{', '.join(names)}: those tasks run without it"
            )
    return warnings


class Output(Protocol):
    """Where the banner goes: a text stream or a management command's ``self.stdout``."""

    def write(self, text: str, /) -> object: ...
    def flush(self) -> None: ...


class ColdShutdown(BaseException):
    """Raised in the main thread by a second signal while a solo-pool task runs."""


class ControlLoop:
    """The control tick: runs each hook every ``interval_s`` on its own thread.

    It keeps running while a solo-pool task blocks the main thread, so heartbeats and control
    never go deaf. A hook that raises is logged and the tick goes on.
    """

    def __init__(self, *, interval_s: float) -> None:
        self.interval_s = interval_s
        self.hooks: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="djworker-control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def tick(self) -> None:
        """One iteration: every hook once."""
        for hook in self.hooks:
            try:
                hook()
            except Exception:
                logger.exception("control hook %r failed", hook)
        close_old_connections()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval_s):
                self.tick()
        finally:
            connections.close_all()


class Worker:
    """One worker process: a consumer feeding a pool, plus the control tick."""

    def __init__(self, config: WorkerSettings, *, stdout: Output | None = None) -> None:
        # A name a live worker here already uses is refused (or, the default, made unique).
        explicit = config.sources.get("hostname", DEFAULT) != DEFAULT
        config = config.replace(hostname=nodename.claim(config.hostname, explicit=explicit))
        self.config = config
        self.stdout = stdout or sys.stdout
        self.broker = Broker(
            url=config.broker_url, transport_options=config.broker_transport_options
        )
        self.pool_class = resolve_pool(config.pool)
        if config.autoscale and not self.pool_class.supports_autoscale:
            raise ConfigurationError(
                f"--autoscale is not available with --pool={config.pool}: that pool cannot "
                "change its size while running; use --pool=threads, prefork, gevent or eventlet"
            )
        self.pool_class.refuse_unenforced_time_limits(
            hard_s=config.time_limit_s,
            soft_s=config.soft_time_limit_s,
            where={
                "hard": spelled(config, "time_limit_s"),
                "soft": spelled(config, "soft_time_limit_s"),
            },
        )
        self.pool: BasePool = self._make_pool(
            config.initial_pool_size(fixed_size=self.pool_class.fixed_size)
        )
        self.consumer = Consumer(broker=self.broker, config=config, pool=self.pool)
        self.control = ControlLoop(interval_s=config.control_interval_s)
        self.plane: ControlPlane | None = None
        self.stop_requested = False
        #: what the broker's own settings can lose (read once connected; shown in the banner)
        self.broker_warnings: list[str] = []
        self.cold_requested = False

    def _make_pool(self, size: int) -> BasePool:
        return self.pool_class(
            size=size,
            on_outcome=lambda outcome: self.consumer.outcomes.put(outcome),
            max_tasks_per_child=self.config.max_tasks_per_child,
            max_memory_per_child_kib=self.config.max_memory_per_child_kib,
            max_size=self.config.max_concurrency,
        )

    # -- signals -----------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop_signal)
        signal.signal(signal.SIGQUIT, self._on_cold_signal)

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_requested:
            self._on_cold_signal(signum, frame)
        self.stop_requested = True

    def _on_cold_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True
        self.cold_requested = True
        if self.pool.blocks_consumer and self.pool.busy:
            raise ColdShutdown()

    # -- running -----------------------------------------------------------------------------

    def run(self) -> int:
        """Run until asked to stop; returns the process exit code."""
        set_broker(self.broker)
        self.install_signal_handlers()
        self.pool.start()
        try:
            try:
                connected = self.consumer.connect(should_stop=lambda: self.stop_requested)
            except ConfigurationError:  # the broker refused us: nothing ran, nothing to hand back
                self.pool.stop(graceful=False)
                raise
            if not connected:
                return self._shutdown()
            assert self.consumer.connection is not None
            self.broker_warnings = broker_durability.check(
                self.consumer.connection, self.broker.scheme
            )
            self.start_control_plane()
            self.control.start()
            self.print_banner()
            signals.send_robust(signals.worker_ready, self)
            logger.info("worker=%s ready", self.config.hostname)
            while not self.stop_requested:
                try:
                    self.consumer.loop_once()
                except self.consumer.recoverable_errors as exc:
                    # At once, not after the pause: a slot freed meanwhile must not start
                    # a message the broker is about to deliver again.
                    self.consumer.connection_lost()
                    logger.warning(
                        "worker=%s lost the broker connection (%s); reconnecting in %.0fs",
                        self.config.hostname,
                        exc,
                        RECONNECT_PAUSE_S,
                    )
                    time.sleep(RECONNECT_PAUSE_S)
                    if not self.consumer.reconnect(should_stop=lambda: self.stop_requested):
                        break
                    logger.info("worker=%s reconnected to the broker", self.config.hostname)
            return self._shutdown()
        except ColdShutdown:
            return self._cold_exit()

    def _shutdown(self) -> int:
        if self.cold_requested:
            return self._cold_exit()
        logger.info(
            "worker=%s warm shutdown: finishing %d running task(s); signal again to stop now",
            self.config.hostname,
            self.pool.busy,
        )
        self.consumer.pause()
        unstarted = self.pool.stop(graceful=True, timeout_s=0)
        self.consumer.give_back_unstarted(unstarted)
        if not self.consumer.wait_idle(should_stop=lambda: self.cold_requested):
            return self._cold_exit()
        self.pool.stop(graceful=True, timeout_s=10)
        self.control.stop()
        if self.plane is not None:
            self.plane.stopped()
        self.consumer.close()
        signals.send_robust(signals.worker_shutdown, self)
        connections.close_all()
        logger.info(
            "worker=%s stopped: processed=%d", self.config.hostname, self.consumer.processed
        )
        return 0

    def start_control_plane(self) -> None:
        """Register in the ``Worker`` table and follow the admin profile (needs the database)."""
        from djworker.control import ControlPlane

        self.plane = ControlPlane(self)
        self.plane.start()
        # The main thread forks pool processes: it keeps no database connection open.
        connections.close_all()

    def _cold_exit(self) -> int:
        logger.warning(
            "worker=%s cold shutdown: %d running task(s) abandoned; the broker will deliver "
            "them again",
            self.config.hostname,
            self.pool.busy,
        )
        try:
            self.pool.stop(graceful=False)
            self.consumer.close()
        finally:
            for handler in logging.getLogger().handlers + logging.getLogger("djworker").handlers:
                handler.flush()
            self.stdout.flush()
        # Pool threads may still be running task code: leave without waiting for them.
        os._exit(COLD_EXIT_CODE)

    # -- reporting ---------------------------------------------------------------------------

    def banner_lines(self) -> list[str]:
        config = self.config
        size = self.pool.size
        concurrency = (
            f"{size} now, autoscale {config.autoscale[0]}..{config.autoscale[1]} "
            "(the bounds win over --concurrency, which only sets the starting size)"
            if config.autoscale
            else str(size)
        )
        lines = [
            f"djworker {__version__} worker {config.hostname} (pid {os.getpid()})",
            f"  broker:      {redact_url(config.broker_url)}",
            f"  pool:        {self.pool.describe()}",
            f"  concurrency: {concurrency}",
            f"  queues:      {', '.join(config.queues)}",
            f"  prefetch:    {config.prefetch_multiplier} per slot",
            f"  limits:      {describe_limits(self.pool)}",
            *(f"  warning:     {warning}" for warning in unenforced_task_limits(self.pool)),
            *(f"  warning:     {warning}" for warning in self.broker_warnings),
            "  settings (value <- source):",
        ]
        if "db_budget" in (pool_info := self.pool.info()):
            lines.insert(3, f"  db budget:   {pool_info['db_budget']}")
        else:
            lines.insert(3, f"  database:    {describe_connection_reuse()}")
        for field, value, layer in explain(config):
            if field == "broker_url":
                value = redact_url(str(value))
            lines.append(f"    {field:<26} {value!s:<24} <- {layer}")
        lines.append(f"  tasks ({len(registry)}):")
        lines.extend(f"    . {name}" for name in sorted(registry))
        return lines

    def print_banner(self) -> None:
        self.stdout.write("\n".join(self.banner_lines()) + "\n")
        self.stdout.flush()

    def info(self) -> dict[str, Any]:
        return {
            "hostname": self.config.hostname,
            "pid": os.getpid(),
            "processed": self.consumer.processed,
            "failed": self.consumer.failed,
            **self.pool.info(),
        }
