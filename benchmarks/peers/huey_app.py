"""huey's side of the database-broker comparison: ``PostgresHuey``, results in the same database.

``store_none=True`` so a no-op's result is stored like everyone else's (huey skips ``None`` by
default). The queue name comes from the environment, so every run has a queue of its own.
"""

from __future__ import annotations

import os

from huey import PostgresHuey

from benchmarks.peers.sink import record_wait

huey = PostgresHuey(
    os.environ.get("DJWORKER_BENCH_QUEUE", "bench"),
    dsn=os.environ.get("DJWORKER_BENCH_HUEY_DSN", ""),
    store_none=True,
)


@huey.task()
def noop() -> None:
    return None


@huey.task()
def probe(key: str, sent_at: float) -> None:
    record_wait(key, sent_at)
