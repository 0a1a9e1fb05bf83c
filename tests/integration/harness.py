"""Real ``runworker`` subprocesses for integration tests.

The worker gets the same settings module as the tests and a ``DATABASE_URL`` pointing at the
test database pytest-django created, so both sides see the same rows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.db import connection

if TYPE_CHECKING:
    from djworker.broker import Broker

ROOT = Path(__file__).resolve().parents[2]
#: the end of the worker's "worker=NAME ready" log line (eventlet's start-up warning says
#: "already", so a bare "ready" would match before the worker is)
READY = " ready\n"


#: Transport options of tests that kill a worker and wait for its messages to come back: a short
#: visibility timeout and, on Redis, a scan for them on every poll (kombu scans every 10th) and
#: a short life for the scan's lock, which a killed worker may have held.
QUICK_REDELIVERY: dict[str, object] = {
    "visibility_timeout": 3,
    "unacked_restore_throttle": 1,
    "unacked_mutex_expire": 2,
}
QUICK_REDELIVERY_ENV = {"DJWORKER_BROKER_TRANSPORT_OPTIONS": json.dumps(QUICK_REDELIVERY)}


def database_url_for_workers() -> str:
    """A URL for the database the tests are using right now (the test database)."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    host = f"{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}"
    return f"postgres://{user}{password}@{host}/{s['NAME']}"


def wait_for(
    predicate: Callable[[], Any],
    *,
    timeout_s: float = 20.0,
    interval_s: float = 0.05,
    what: str = "",
) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or predicate}")
        time.sleep(interval_s)


class WorkerProcess:
    """A ``manage.py runworker`` subprocess whose output goes to a file the test can read."""

    def __init__(
        self,
        *args: str,
        broker_url: str | None = None,
        env: dict[str, str] | None = None,
        settings: str = "tests.settings",
    ) -> None:
        self.args = list(args)
        self.queue = None
        self.log_path = Path(tempfile.mkdtemp(prefix="djworker-test-")) / "worker.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings,
            "DATABASE_URL": database_url_for_workers(),
            "PYTHONUNBUFFERED": "1",
            **({"DJWORKER_BROKER_URL": broker_url} if broker_url else {}),
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> tuple[list[str], Path, dict[str, str]]:
        """The command line, directory and environment to start; other launchers override it."""
        return [sys.executable, str(ROOT / "manage.py"), "runworker", *self.args], ROOT, self.env

    def start(self, *, wait_ready: bool = True) -> WorkerProcess:
        command, cwd, env = self.launch()
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()/wait()
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        if wait_ready:
            self.wait_for_output(READY, timeout_s=30)
        return self

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, *, timeout_s: float = 20.0) -> None:
        def seen() -> bool:
            if (
                self.process is not None
                and self.process.poll() is not None
                and text not in self.output
            ):
                raise AssertionError(
                    f"worker exited ({self.process.returncode}) before {text!r}:\n{self.output}"
                )
            return text in self.output

        wait_for(seen, timeout_s=timeout_s, what=f"{text!r} in the worker's output")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout_s: float = 30.0) -> int:
        assert self.process is not None
        try:
            return self.process.wait(timeout_s)
        finally:
            self._log.close()

    def stop(self) -> None:
        """Kill the worker if it is still running (test cleanup)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        if hasattr(self, "_log"):
            self._log.close()


def purge_queue(broker: Broker, name: str) -> int:
    """Empty the queue ``name`` on ``broker``, declaring it first; returns how many were removed.

    For a test that must use a shared queue (the default one): it starts from a queue it
    emptied itself, so a message some earlier run left there cannot fail it.
    """
    with broker.connection() as conn:
        bound = broker.queue(name)(conn.default_channel)
        bound.declare()
        return int(bound.purge() or 0)


def unique_queue(prefix: str = "q") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
