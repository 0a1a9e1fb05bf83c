"""The eventlet pool: tasks on green threads of an eventlet-patched worker.

eventlet is deprecated upstream and kept here for projects already built on it; prefer the
gevent pool. Start the worker through ``manage.py`` or ``python -m djworker`` so the standard
library is patched before Django, psycopg or kombu are imported (see ``djworker.green``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from djworker.concurrency.green_pool import GreenPool, GreenRuntime
from djworker.exceptions import PoolNotAvailable


class EventletRuntime(GreenRuntime):
    """``GreenRuntime`` over eventlet."""

    def __init__(self) -> None:
        # Imported when a pool is built, not with this module: the registry reads the pool's
        # capability flags (for messages and the admin) in processes that never run it.
        import eventlet
        from greenlet import GreenletExit

        self.eventlet = eventlet
        self.exit_exception = GreenletExit

    def spawn(self, fn: Callable[..., None], *args: Any) -> Any:
        return self.eventlet.spawn(fn, *args)

    def kill(self, handle: Any) -> None:
        # GreenThread.kill switches into the victim; do it from the hub so the caller never
        # blocks and a slot may safely be killed from another slot.
        self.eventlet.spawn_after(0, handle.kill)

    def call_later(self, seconds: float, fn: Callable[[], None]) -> Any:
        return self.eventlet.spawn_after(seconds, fn)

    def cancel(self, timer: Any) -> None:
        timer.cancel()

    def timeout(self, seconds: float, exc: BaseException) -> AbstractContextManager[object]:
        return self.eventlet.Timeout(seconds, exc)

    def current(self) -> Any:
        return self.eventlet.getcurrent()

    def sleep(self, seconds: float) -> None:
        self.eventlet.sleep(seconds)

    def is_alive(self, handle: Any) -> bool:
        return not handle.dead


class EventletPool(GreenPool):
    """Runs each job on an eventlet green thread; ``-c`` is the number running at once."""

    alias = "eventlet"
    runtime_class = EventletRuntime

    def start(self) -> None:
        import eventlet.patcher

        if not eventlet.patcher.is_monkey_patched("socket"):
            raise PoolNotAvailable(
                "the eventlet pool needs an eventlet-patched process: start the worker with "
                "`python manage.py runworker --pool=eventlet` (manage.py must call "
                "djworker.green.patch_if_requested(sys.argv) first) or "
                "`python -m djworker runworker --pool=eventlet`"
            )
        super().start()
