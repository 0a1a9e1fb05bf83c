"""What a green library does to the whole process: patch it, and run real-thread work.

A green pool's greenlets only cooperate if the library patched the standard library before
Django, psycopg or kombu imported ``socket``, ``threading`` and friends; and an ``async def``
django.tasks task needs its event loop in a real OS thread, because an asyncio loop in a
greenlet can block the hub on its selector (and with it every run of the worker).

Each green pool's registry entry names its library here (``PoolEntry.green``); ``djworker.green``
patches with it and ``djworker.backend_runner`` runs coroutines with it. This module is read
before Django is imported, so it imports neither Django nor the library until asked to patch.
A pool on another green library adds its ``GreenLibrary`` here.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any


class GreenLibrary(ABC):
    """The process-wide hooks of one green library."""

    #: the library's package, as the warnings name it
    name: str

    @abstractmethod
    def patch(self) -> bool:
        """Patch the standard library; False if the library is not installed (runworker
        names the extra to install when it resolves the pool)."""

    @abstractmethod
    def run_in_real_thread(self, fn: Callable[[], Any]) -> Any:
        """Call ``fn`` in a real OS thread while the calling greenlet waits cooperatively."""


class Gevent(GreenLibrary):
    name = "gevent"

    def patch(self) -> bool:
        try:
            from gevent import monkey
        except ImportError:
            return False
        monkey.patch_all()
        # psycopg detects gevent's patching by itself and waits cooperatively.
        return True

    def run_in_real_thread(self, fn: Callable[[], Any]) -> Any:
        import gevent

        return gevent.get_hub().threadpool.apply(fn)


class Eventlet(GreenLibrary):
    name = "eventlet"

    def patch(self) -> bool:
        # psycopg only detects gevent: without this its C wait function would block the hub.
        os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")
        try:
            import eventlet
        except ImportError:
            return False
        eventlet.monkey_patch()
        return True

    def run_in_real_thread(self, fn: Callable[[], Any]) -> Any:
        from eventlet import tpool

        return tpool.execute(fn)


GEVENT = Gevent()
EVENTLET = Eventlet()
