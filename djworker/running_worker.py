"""What the control plane may see and ask of a running worker.

The control plane (``control.py``, ``control_commands.py``) runs on the worker's control thread
and turns profile revisions and control commands into calls on this interface; it never
imports ``worker.py``, which implements it (``worker.Worker``). Tests can hand it any object
with these members.

Reading ``settings``, ``pool`` and ``consumer`` is safe from any thread. The pool operations
(``resize``, ``replace_pool``, ``restart_process``, ``apply_settings``) touch the pool and the
broker connection: they run on the consumer's thread only, so the control thread hands them
over with ``call_soon`` and collects the outcome from the future.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol, TypeVar

from djworker.broker import Broker
from djworker.concurrency.base import BasePool
from djworker.conf import WorkerSettings
from djworker.consumer import Consumer

T = TypeVar("T")


class RunningWorker(Protocol):
    """A worker process as its control plane sees it."""

    @property
    def settings(self) -> WorkerSettings:
        """The settings in force (replaced as a whole by ``apply_settings``)."""

    @property
    def pool(self) -> BasePool:
        """The pool in use now (a new object after ``replace_pool``)."""

    @property
    def consumer(self) -> Consumer: ...

    @property
    def broker(self) -> Broker: ...

    def call_soon(self, fn: Callable[[], T]) -> Future[T]:
        """Run ``fn`` on the consumer's thread at its next iteration; safe from any thread."""

    def request_stop(self) -> None:
        """Ask for a warm shutdown, as a first SIGTERM does; safe from any thread."""

    # -- consumer thread only ----------------------------------------------------------------

    def resize(self, delta: int) -> int:
        """Grow (``delta`` > 0) or shrink the pool; prefetch follows. Returns the new size."""

    def replace_pool(self) -> str:
        """Drain the pool, then start a new one as the settings say; returns what it did."""

    def restart_process(self) -> None:
        """Drain the pool, then start the worker process again (it never returns)."""

    def apply_settings(self, new: WorkerSettings) -> list[str]:
        """Switch to ``new`` settings, changing only what differs; returns the pool changes."""
