"""Publish no-op tasks that store their result, then wait until every one is stored.

Run as ``python -m tests.perf.publish --queue Q --count N`` with ``DJANGO_SETTINGS_MODULE``,
(``--sleep S``: tasks that sleep S seconds instead of no-ops),
``DATABASE_URL`` and ``DJWORKER_BROKER_URL`` in the environment: the counting tests publish
into a database of a private PostgreSQL, which the test process itself is not connected to.
It prints ``stored N`` once all N results are SUCCESSFUL, and exits 1 if they are not within
``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--sleep", type=float, help="seconds each task sleeps (default: no-ops)")
    parser.add_argument("--timeout", type=float, default=120.0)
    options = parser.parse_args(argv)

    import django

    django.setup()
    from djworker.broker import get_broker
    from djworker.models import TaskResult
    from tests.taskapp import tasks

    if options.sleep is None:
        ids = [tasks.noop.apply_async(queue=options.queue).id for _ in range(options.count)]
    else:
        ids = [
            tasks.sleep.apply_async((options.sleep,), queue=options.queue).id
            for _ in range(options.count)
        ]
    get_broker().close()
    deadline = time.monotonic() + options.timeout
    stored = 0
    while time.monotonic() < deadline:
        stored = TaskResult.objects.filter(id__in=ids, status="SUCCESSFUL").count()
        if stored == len(ids):
            print(f"stored {stored}", flush=True)
            return
        time.sleep(0.05)
    raise SystemExit(f"only {stored} of {len(ids)} results stored after {options.timeout}s")


if __name__ == "__main__":
    main()
