"""Fixtures of the fault suite: a side channel that counts real executions per task.

Fault tests assert two things of every run: nothing was lost (each key ran at least once) and
duplicates stay within the tasks that were running when the fault hit. Both are counted from
``ExecutionLog``, which the tasks in ``tests/taskapp/fault_tasks.py`` write to, not from the
result store, because a fault may stop a result from being stored at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from tests.integration.harness import WorkerProcess


class ExecutionLog:
    """The side channel of one test: a file every run appends ``<key> <pid>`` to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    @property
    def env(self) -> dict[str, str]:
        """Environment to give a worker so its task runs write here."""
        return {"DJWORKER_FAULT_LOG": str(self.path)}

    def runs(self) -> list[tuple[str, int]]:
        lines = self.path.read_text().splitlines()
        return [(key, int(pid)) for key, pid in (line.rsplit(" ", 1) for line in lines if line)]

    def counts(self) -> Counter[str]:
        return Counter(key for key, _ in self.runs())

    def lost(self, keys: Iterable[str]) -> list[str]:
        """Keys that never ran."""
        counts = self.counts()
        return [key for key in keys if counts[key] == 0]

    def duplicated(self) -> dict[str, int]:
        """Keys that ran more than once, with how many times."""
        return {key: n for key, n in self.counts().items() if n > 1}


@pytest.fixture
def execution_log(tmp_path: Path) -> ExecutionLog:
    return ExecutionLog(tmp_path / "executions.log")


@pytest.fixture
def worker_factory() -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker subprocesses; any still running at the end of the test is killed."""
    started: list[WorkerProcess] = []

    def start(*args: str, wait_ready: bool = True, **kwargs: object) -> WorkerProcess:
        worker = WorkerProcess(*args, **kwargs)  # type: ignore[arg-type]
        started.append(worker)
        return worker.start(wait_ready=wait_ready)

    yield start
    for worker in started:
        worker.stop()
