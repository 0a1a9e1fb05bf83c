"""Where the latency probe of every implementation writes its wait: a Redis list per run.

The probe takes the wall-clock time its caller read just before the call; the wait is the
worker's clock at the task's start minus that, on the same machine. Writing it costs one Redis
round trip after the clock is read, so it does not count in the figure.
"""

from __future__ import annotations

import os
import threading
import time

import redis

SINK_ENV = "DJWORKER_BENCH_SINK_URL"
_local = threading.local()


def record_wait(key: str, sent_at: float) -> None:
    started_at = time.time()
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = redis.Redis.from_url(os.environ[SINK_ENV])
    client.rpush(key, started_at - sent_at)
