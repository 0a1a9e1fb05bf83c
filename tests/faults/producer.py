"""A producer process for fault tests: publishes ``faults.run`` tasks with keys ``PREFIX0..N-1``.

Run as ``python -m tests.faults.producer --queue Q --prefix P --count N [--seconds S]`` with
``DJANGO_SETTINGS_MODULE``, ``DATABASE_URL`` and ``DJWORKER_BROKER_URL`` in the environment.
Tests use it where the publisher must write to a database other than the test's own (a private
PostgreSQL behind ``django://``) and to publish from several processes at once.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence

from tests.integration.harness import ROOT


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=0.0)
    options = parser.parse_args(argv)

    import django

    django.setup()
    from djworker.broker import get_broker
    from tests.taskapp import fault_tasks

    for i in range(options.count):
        fault_tasks.run.apply_async((f"{options.prefix}{i}", options.seconds), queue=options.queue)
    get_broker().close()
    print(f"published {options.count}", flush=True)


def publish(
    *, queue: str, prefix: str, count: int, env: dict[str, str], seconds: float = 0.0
) -> list[str]:
    """Publish from a producer process with ``env``; the keys it published."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.faults.producer",
            f"--queue={queue}",
            f"--prefix={prefix}",
            f"--count={count}",
            f"--seconds={seconds}",
        ],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env},
        check=True,
        capture_output=True,
        timeout=120,
    )
    return [f"{prefix}{i}" for i in range(count)]


if __name__ == "__main__":
    main()
