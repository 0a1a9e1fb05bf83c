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
from concurrent.futures import Future
from types import FrameType
from typing import Any, Protocol, TypeVar

from django.db import close_old_connections, connections

from djworker import __version__, broker_durability, green, nodename, signals, worker_connections
from djworker.broker import Broker, redact_url, set_broker
from djworker.concurrency.base import BasePool
from djworker.concurrency.lookup import resolve_pool
from djworker.concurrency.settings_check import check_settings
from djworker.conf import DEFAULT, WorkerSettings, explain, spelled
from djworker.consumer import Consumer
from djworker.control import ControlPlane
from djworker.exceptions import ConfigurationError
from djworker.execution import TaskExecutor
from djworker.log_safety import get_logger
from djworker.task_definition import registry

logger = get_logger(__name__)

T = TypeVar("T")

COLD_EXIT_CODE = 1
#: pause before reconnecting, so a broker that keeps failing is not hammered
RECONNECT_PAUSE_S = 1.0


def describe_connection_reuse() -> str:
    """How task runs get their database connection, with a hint when each opens a new one."""
    options = connections["default"].settings_dict
    if options.get("OPTIONS", {}).get("pool"):
        return "connections from Django's pool (OPTIONS['pool'])"
    max_age = options.get("CONN_MAX_AGE", 0)
    own = "the worker's own writes: one connection per slot, kept open"
    if max_age is None or max_age > 0:
        return f"task code: connections reused across tasks (CONN_MAX_AGE={max_age}); {own}"
    return (
        "task code: a new connection for each task that queries (CONN_MAX_AGE=0; set "
        f"CONN_MAX_AGE or OPTIONS['pool'] to reuse them); {own}"
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
    """Stops the main thread for a cold shutdown, which ``Worker.run`` then carries out.

    Raised by a second signal while a solo-pool task runs, and by a pool or process restart
    whose drain a cold shutdown interrupted.
    """


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
        # The tick's session stays open between ticks (none opened per second when idle).
        worker_connections.keep_open()
        try:
            while not self._stop.wait(self.interval_s):
                self.tick()
        finally:
            connections.close_all()


class Worker:
    """One worker process: a consumer feeding a pool, plus the control tick."""

    def __init__(self, settings: WorkerSettings, *, stdout: Output | None = None) -> None:
        # A name a live worker here already uses is refused (or, the default, made unique).
        explicit = settings.sources.get("hostname", DEFAULT) != DEFAULT
        settings = settings.replace(hostname=nodename.claim(settings.hostname, explicit=explicit))
        #: the settings resolved from every layer; replaced as a whole by ``apply_settings``
        self.settings = settings
        self.stdout = stdout or sys.stdout
        self.broker = Broker(
            url=settings.broker_url, transport_options=settings.broker_transport_options
        )
        self.pool_class = resolve_pool(settings.pool)
        check_settings(self.pool_class, settings, spell=lambda field: spelled(settings, field))
        self.pool: BasePool = self._make_pool(
            settings.initial_pool_size(fixed_size=self.pool_class.fixed_size)
        )
        self.consumer = Consumer(broker=self.broker, settings=settings, pool=self.pool)
        self.control = ControlLoop(interval_s=settings.control_interval_s)
        self.plane: ControlPlane | None = None
        self.stop_requested = False
        #: what the broker's own settings can lose (read once connected; shown in the banner)
        self.broker_warnings: list[str] = []
        self.cold_requested = False

    @property
    def config(self) -> WorkerSettings:
        """The former name of ``settings``, kept for code that reads it (``worker_ready``
        receivers get the worker as sender)."""
        return self.settings

    def _make_pool(self, size: int) -> BasePool:
        return self.pool_class(
            size=size,
            on_outcome=lambda outcome: self.consumer.outcomes.put(outcome),
            executor=TaskExecutor(),
            max_tasks_per_child=self.settings.max_tasks_per_child,
            max_memory_per_child_kib=self.settings.max_memory_per_child_kib,
            max_size=self.settings.max_concurrency,
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
        # Before the pool starts, so that its threads and processes have their own too; this
        # thread's are kept open once the pool has installed any connection budget (a pooled
        # connection is handed back, never kept).
        worker_connections.enable()
        self.pool.start()
        # The consumer's connection carries the django:// LISTEN too, unless tasks run here.
        worker_connections.keep_open(listen=not self.pool.blocks_consumer)
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
            logger.info("worker=%s ready", self.settings.hostname)
            while not self.stop_requested:
                try:
                    self.consumer.loop_once()
                except self.consumer.recoverable_errors as exc:
                    # At once, not after the pause: a slot freed meanwhile must not start
                    # a message the broker is about to deliver again.
                    self.consumer.connection_lost()
                    logger.warning(
                        "worker=%s lost the broker connection (%s); reconnecting in %.0fs",
                        self.settings.hostname,
                        exc,
                        RECONNECT_PAUSE_S,
                    )
                    time.sleep(RECONNECT_PAUSE_S)
                    if not self.consumer.reconnect(should_stop=lambda: self.stop_requested):
                        break
                    logger.info("worker=%s reconnected to the broker", self.settings.hostname)
            return self._shutdown()
        except ColdShutdown:
            return self._cold_exit()

    def _shutdown(self) -> int:
        if self.cold_requested:
            return self._cold_exit()
        logger.info(
            "worker=%s warm shutdown: finishing %d running task(s); signal again to stop now",
            self.settings.hostname,
            self.pool.busy,
        )
        if not self.drain():
            return self._cold_exit()
        self.control.stop()
        if self.plane is not None:
            self.plane.stopped()
        self.consumer.close()
        signals.send_robust(signals.worker_shutdown, self)
        worker_connections.close_task_connections()  # the solo pool's runs used them
        connections.close_all()
        logger.info(
            "worker=%s stopped: processed=%d", self.settings.hostname, self.consumer.processed
        )
        return 0

    def start_control_plane(self) -> None:
        """Register in the ``Worker`` table and follow the worker profile (needs the database)."""
        self.plane = ControlPlane(self)
        self.plane.start()
        self.control.hooks.extend(self.plane.hooks)
        # The main thread forks pool processes: it keeps no database connection open.
        connections.close_all()

    def _cold_exit(self) -> int:
        logger.warning(
            "worker=%s cold shutdown: %d running task(s) abandoned; the broker will deliver "
            "them again",
            self.settings.hostname,
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

    # -- what the control plane asks (see running_worker.RunningWorker) -------------------------

    def call_soon(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on the consumer's thread at its next iteration; safe from any thread."""
        return self.consumer.call_soon(fn)

    def request_stop(self) -> None:
        """Ask for a warm shutdown, as a first SIGTERM does; safe from any thread."""
        self.stop_requested = True

    # The methods below run on the consumer's thread only: they touch the pool and kombu.

    def drain(self) -> bool:
        """Take no new work, hand back what has not started, let running tasks finish.

        Then the pool is stopped; the consumer stays connected, paused. The one drain used by
        the warm shutdown, ``replace_pool`` and ``restart_process``. Returns False, the pool
        still running, when a cold shutdown is asked for before the running tasks finish.
        """
        self.consumer.pause()
        self.consumer.give_back_unstarted(self.pool.stop(graceful=True, timeout_s=0))
        if not self.consumer.wait_idle(should_stop=lambda: self.cold_requested):
            return False
        self.pool.stop(graceful=True, timeout_s=10)
        return True

    def _drain_for_restart(self) -> None:
        if not self.drain():
            # Asked to stop now while draining: abandon the restart, as a cold shutdown does.
            raise ColdShutdown()

    def resize(self, delta: int) -> int:
        """Grow (``delta`` > 0) or shrink the pool; prefetch follows. Returns the new size."""
        if delta > 0:
            self.pool.grow(delta)
        elif delta < 0:
            self.pool.shrink(-delta)
        self.consumer.update_prefetch()
        return self.pool.size

    def replace_pool(self) -> str:
        """Drain the pool, then start a new one of the kind and size the settings name.

        Running tasks finish; unstarted ones go back to the broker. Never used to start a pool
        of processes: a change of pool kind to prefork, and a restart of a prefork pool, start
        the worker process again (``restart_process``).
        """
        self._drain_for_restart()
        self.pool_class = resolve_pool(self.settings.pool)
        size = self._target_size(self.settings, self.pool_class)
        self.pool = self.consumer.pool = self._make_pool(size)
        self.pool.start()
        worker_connections.keep_open(listen=not self.pool.blocks_consumer)
        self.consumer.stopping = False  # drained for a restart, not for a shutdown: run again
        self.consumer.update_prefetch()
        if not self.consumer.hold:
            self.consumer.resume()
        logger.info(
            "worker=%s pool restarted: %s, %d slot(s)",
            self.settings.hostname,
            self.pool.describe(),
            self.pool.size,
        )
        return f"pool restarted: {self.pool.describe()}, {self.pool.size} slot(s)"

    def restart_process(self) -> None:
        """Start the worker process again, for a pool kind that needs its own process.

        A green pool patches the standard library when its process starts, and a patched
        process cannot go back. A pool of processes forks its fork server when the worker holds
        no database connection, which is only so before the worker's other threads start. So
        the pool is drained, then the process replaces itself with ``python -m djworker
        runworker`` and the same arguments. It keeps its pid and hostname, and follows the
        profile (which names the pool in ``settings.pool``) from its first tick.
        """
        pool = self.settings.pool
        logger.info("worker=%s starting again for the %s pool", self.settings.hostname, pool)
        self._drain_for_restart()
        self.control.stop()
        self.consumer.close()
        connections.close_all()
        pool_class = resolve_pool(pool)
        green.exec_worker(sys.argv, patch_for=pool_class.alias if pool_class.is_green else None)

    def apply_settings(self, new: WorkerSettings) -> list[str]:
        """Switch to ``new`` settings, changing only what differs; returns the pool changes.

        A new pool kind replaces the pool (or the process, see ``restart_process``); new size
        or autoscale bounds resize it in place; queues, pause, prefetch and recycling limits
        follow at once; the rest applies to the next tasks.
        """
        old = self.settings
        self.settings = self.consumer.settings = new
        done: list[str] = []
        # Classes, not names, decide: an alias (processes for prefork) is the same pool.
        new_class = resolve_pool(new.pool)
        pool_changed = new_class is not type(self.pool)
        if pool_changed and (new_class.is_green or self.pool.is_green or new_class.uses_processes):
            self.restart_process()
        if pool_changed:
            self.replace_pool()
            done.append(f"pool {old.pool}→{new.pool}")
        elif (new.concurrency, new.autoscale) != (old.concurrency, old.autoscale):
            before = self.pool.size
            self.resize(self._target_size(new, type(self.pool)) - before)
            done.append(f"size {before}→{self.pool.size}")
        self.pool.max_tasks_per_child = new.max_tasks_per_child
        self.pool.max_memory_per_child_kib = new.max_memory_per_child_kib
        for name in new.queues:
            self.consumer.add_queue(name)
        for name in [q for q in self.consumer.queues if q not in new.queues]:
            self.consumer.cancel_queue(name)
        if new.paused != old.paused:
            self.consumer.set_paused(new.paused)
        self.consumer.update_prefetch()
        return done

    def _target_size(self, settings: WorkerSettings, pool_class: type[BasePool]) -> int:
        """The size ``settings`` ask of a ``pool_class`` pool; autoscale keeps the size it can."""
        if settings.autoscale:
            low, high = settings.autoscale
            return min(max(self.pool.size, low), high)
        return settings.initial_pool_size(fixed_size=pool_class.fixed_size)

    # -- reporting ---------------------------------------------------------------------------

    def banner_lines(self) -> list[str]:
        settings = self.settings
        size = self.pool.size
        concurrency = (
            f"{size} now, autoscale {settings.autoscale[0]}..{settings.autoscale[1]} "
            "(the bounds win over --concurrency, which only sets the starting size)"
            if settings.autoscale
            else str(size)
        )
        lines = [
            f"djworker {__version__} worker {settings.hostname} (pid {os.getpid()})",
            f"  broker:      {redact_url(settings.broker_url)}",
            f"  pool:        {self.pool.describe()}",
            f"  concurrency: {concurrency}",
            f"  queues:      {', '.join(settings.queues)}",
            f"  prefetch:    {settings.prefetch_multiplier} per slot",
            f"  limits:      {describe_limits(self.pool)}",
            *(f"  warning:     {warning}" for warning in unenforced_task_limits(self.pool)),
            *(f"  warning:     {warning}" for warning in self.broker_warnings),
            "  settings (value <- source):",
        ]
        if "db_budget" in (pool_info := self.pool.info()):
            lines.insert(3, f"  db budget:   {pool_info['db_budget']}")
        else:
            lines.insert(3, f"  database:    {describe_connection_reuse()}")
        for field, value, layer in explain(settings):
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
            "hostname": self.settings.hostname,
            "pid": os.getpid(),
            "processed": self.consumer.processed,
            "failed": self.consumer.failed,
            **self.pool.info(),
        }
