"""The gevent pool: tasks on greenlets of a gevent-patched worker, for I/O-bound work.

Start the worker with ``runworker --pool=gevent`` through ``manage.py`` or ``python -m djworker``
so the standard library is patched before Django, psycopg or kombu are imported (see
``djworker.green``). Everything but the gevent calls lives in ``djworker.concurrency.green_pool``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from djworker.concurrency.green_pool import GreenPool, GreenRuntime
from djworker.exceptions import PoolNotAvailable


class GeventRuntime(GreenRuntime):
    """``GreenRuntime`` over gevent."""

    def __init__(self) -> None:
        # Imported when a pool is built, not with this module: the registry reads the pool's
        # capability flags (for messages and the admin) in processes that never run it.
        import gevent
        from greenlet import GreenletExit

        self.gevent = gevent
        self.exit_exception = GreenletExit

    def spawn(self, fn: Callable[..., None], *args: Any) -> Any:
        return self.gevent.spawn(fn, *args)

    def kill(self, handle: Any) -> None:
        handle.kill(block=False)

    def call_later(self, seconds: float, fn: Callable[[], None]) -> Any:
        return self.gevent.spawn_later(seconds, fn)

    def cancel(self, timer: Any) -> None:
        timer.kill(block=False)

    def timeout(self, seconds: float, exc: BaseException) -> AbstractContextManager[object]:
        return self.gevent.Timeout(seconds, exc)

    def current(self) -> Any:
        return self.gevent.getcurrent()

    def sleep(self, seconds: float) -> None:
        self.gevent.sleep(seconds)

    def is_alive(self, handle: Any) -> bool:
        return not handle.dead


class GeventPool(GreenPool):
    """Runs each job on a greenlet; ``-c`` is the number of tasks running at once."""

    alias = "gevent"
    runtime_class = GeventRuntime

    def start(self) -> None:
        import gevent.monkey

        if not gevent.monkey.is_module_patched("socket"):
            raise PoolNotAvailable(
                "the gevent pool needs a gevent-patched process: start the worker with "
                "`python manage.py runworker --pool=gevent` (manage.py must call "
                "djworker.green.patch_if_requested(sys.argv) first) or "
                "`python -m djworker runworker --pool=gevent`"
            )
        super().start()
