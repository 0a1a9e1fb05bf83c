"""What ``djworker.progress()`` costs a short task: ``execute()`` of a no-op task, plain and
calling ``progress()`` ``--calls`` times, in this process against the real database.

Each sample runs the whole of ``execute()`` (RUNNING write, the task, the result write), the two
kinds interleaved so that database noise hits both alike; it prints the medians and the
difference. The database must be migrated (``manage.py migrate``).

Usage::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/djworker_bench \\
        .venv/bin/python benchmarks/progress_overhead.py --runs 400 --calls 1000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()

    import django

    django.setup()
    from djworker import message
    from djworker.execution import execute
    from djworker.job import Job
    from djworker.models import TaskResult
    from tests.taskapp import tasks

    def once(task_args: tuple[object, ...], name: str) -> float:
        envelope = message.build(
            task_id=str(uuid.uuid4()),
            task_name=name,
            args=list(task_args),
            kwargs={},
            queue="bench",
            priority=0,
        )
        job = Job(1, envelope, hostname="bench")
        started = time.perf_counter()
        execute(job)
        return time.perf_counter() - started

    plain, reporting = [], []
    for _ in range(args.runs):
        plain.append(once((), tasks.noop.name))
        reporting.append(once((args.calls,), tasks.noop_reporting_progress.name))
    TaskResult.objects.filter(queue="bench").delete()
    a, b = statistics.median(plain), statistics.median(reporting)
    print(f"no-op:                      median {a * 1e3:.3f} ms over {args.runs} runs")
    print(f"no-op + {args.calls} progress calls: median {b * 1e3:.3f} ms")
    print(f"difference: {(b - a) * 1e3:+.3f} ms ({(b / a - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()
