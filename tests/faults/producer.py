"""A producer process for fault tests: publishes ``faults.run`` tasks with keys ``PREFIX0..N-1``.

Run as ``python -m tests.faults.producer --queue Q --prefix P --count N [--seconds S]`` with
``DJANGO_SETTINGS_MODULE``, ``DATABASE_URL`` and ``DJWORKER_BROKER_URL`` in the environment;
``--count 0`` publishes until SIGTERM. It prints ``published N`` at the end; an error of a
publish ends it with a traceback and exit 1. Tests use it where the publisher must write to a
database other than the test's own (a private PostgreSQL behind ``django://``) and to publish
from several processes at once (``ProducerProcess``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from tests.integration.harness import ROOT, database_url_for_workers

_stopping = False


def _stop(signum: int, frame: FrameType | None) -> None:
    global _stopping
    _stopping = True


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=0.0)
    parser.add_argument("--task", default="faults.run", help="faults.run or another task of it")
    options = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)

    import django

    django.setup()
    from djworker.broker import get_broker
    from djworker.task_definition import get_task
    from tests.taskapp import fault_tasks  # noqa: F401 - registers the faults.* tasks

    task = get_task(options.task)
    published = 0
    while not _stopping and (options.count == 0 or published < options.count):
        key = f"{options.prefix}{published}"
        task.apply_async((key, options.seconds), queue=options.queue)
        published += 1
    get_broker().close()
    print(f"published {published}", flush=True)


def publish(
    *,
    queue: str,
    prefix: str,
    count: int,
    env: dict[str, str],
    seconds: float = 0.0,
    task: str = "faults.run",
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
            f"--task={task}",
        ],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env},
        check=True,
        capture_output=True,
        timeout=120,
    )
    return [f"{prefix}{i}" for i in range(count)]


class ProducerProcess:
    """A producer publishing in the background, on the test database unless ``env`` says not.

    ``count`` 0 publishes until ``stop()``; ``keys`` lists what a finite producer publishes.
    """

    def __init__(
        self, *, queue: str, prefix: str, count: int, env: dict[str, str] | None = None
    ) -> None:
        self.keys = [f"{prefix}{i}" for i in range(count)]
        self.output_path = Path(tempfile.mkdtemp(prefix="djworker-producer-")) / "producer.log"
        self._output = open(self.output_path, "wb")  # noqa: SIM115 - closed in kill()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.faults.producer",
                f"--queue={queue}",
                f"--prefix={prefix}",
                f"--count={count}",
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "DATABASE_URL": database_url_for_workers(),
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            },
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )

    @property
    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def finish(self, timeout_s: float = 600.0) -> int:
        """Wait for the producer to end; how many it published (it must exit 0)."""
        returncode = self.process.wait(timeout_s)
        assert returncode == 0, f"producer exited {returncode}:\n{self.output}"
        return int(self.output.rsplit("published ", 1)[1].split()[0])

    def stop(self) -> int:
        """Stop an endless producer after its current publish; how many it published."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.finish(timeout_s=60)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._output.close()


if __name__ == "__main__":
    main()
