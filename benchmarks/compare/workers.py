"""The worker process of each implementation, as its users start it, on 127.0.0.1 only.

Each peer runs with its documented defaults apart from what a fair no-op comparison needs:
the pool and its size (``implementations.POOLS``), one queue of the run's own, Celery without
its cluster chatter (gossip, mingle, heartbeats: nothing else to talk to), and db_worker polling
every 50 ms instead of every second when its queue is empty, so that its pick-up latency is not
just its poll interval.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.compare.implementations import POOLS, Implementation
from benchmarks.compare.services import workdir

#: huey's worker type for each pool (its one-thread consumer stands in for solo)
HUEY_WORKER_TYPES = {
    "solo": "thread",
    "threads": "thread",
    "prefork": "process",
    "gevent": "greenlet",
}


def command(implementation: Implementation, pool: str, queue: str) -> list[str]:
    concurrency = str(POOLS[pool])
    if implementation.kind == "celery":
        return [
            *(sys.executable, "-m", "celery", "-A", "benchmarks.peers.celery_app", "worker"),
            *("-P", pool, "-c", concurrency, "-Q", queue, "-l", "WARNING"),
            *("-n", f"{queue}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"),
        ]
    if implementation.kind == "huey":
        return [
            *(sys.executable, "-m", "benchmarks.peers.huey_consumer"),
            *("benchmarks.peers.huey_app.huey", "-k", HUEY_WORKER_TYPES[pool]),
            *("-w", concurrency, "-l", os.devnull),
        ]
    if implementation.kind == "django-tasks-db":
        return [
            *(sys.executable, "-m", "django", "db_worker", "--queue-name", queue),
            *("--backend", "tasksdb", "--interval", "0.05", "--no-startup-delay", "--no-reload"),
        ]
    return [
        *(sys.executable, "-m", "djworker", "runworker", "--pool", pool, "-c", concurrency),
        *("-Q", queue, "-n", f"{queue}@%h", "-l", "WARNING"),
    ]


def start(
    implementation: Implementation, pool: str, queue: str, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command(implementation, pool, queue),
        cwd=workdir(implementation),
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so stop() reaches pool children too
    )


def stop(worker: subprocess.Popen[bytes], grace_s: float = 20.0) -> str:
    """SIGTERM (a warm shutdown everywhere), then SIGKILL to the whole group after ``grace_s``.

    Returns how it ended, for the run's record.
    """
    if worker.poll() is not None:
        return f"had exited ({worker.returncode})"
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(grace_s)
        outcome = f"stopped ({worker.returncode})"
    except subprocess.TimeoutExpired:
        outcome = f"killed after {grace_s:.0f} s"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)  # leftover pool children, if any
    worker.wait()
    time.sleep(0.2)  # let the killed group's sockets close before the next run
    return outcome
