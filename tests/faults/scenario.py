"""One fault case: a broker stack, a batch of tasks, workers, a fault, and what came of it.

Every case runs the same way so their figures compare. ``TASKS`` tasks of ``TASK_SECONDS`` each
are published, a worker with ``CONCURRENCY`` slots starts and fills them (its default prefetch
window holds the rest, reserved but not started), then the test injects its fault while that
first wave runs. "The tasks running at the fault" are the keys that had started and not
returned when it hit: the test notes them just before it injects the fault and again just after
(a server takes a moment to stop, RabbitMQ a moment to close a connection), and a task that
started and returned entirely within that moment would be missed, so a fault must take less
than a task's ``task_seconds`` to inject. After the recovery the
case waits until every key has completed, nothing is left at the broker, and every worker has
stopped warmly, then checks:

* nothing lost: every key completed at least once;
* duplicates only where a task was running: every key that started twice was running at the
  fault, and none started three times.

Figures go to the file named by ``DJWORKER_FAULT_FIGURES`` (JSON lines), for docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
import redis

from tests.faults.conftest import ExecutionLog
from tests.faults.producer import publish
from tests.faults.servers import amqp_queue_messages, amqp_vhost_of
from tests.integration.harness import WorkerProcess, unique_queue, wait_for

TASKS = 8
CONCURRENCY = 4
TASK_SECONDS = 1.0
#: how long every key may take to complete after the fault, on a loaded machine
RECOVERY_TIMEOUT_S = 120.0


def matrix(pairs: list[tuple[str, str]], *, smoke: tuple[str, str] | None = None) -> list[Any]:
    """``(broker, pool)`` parameters; the one named ``smoke`` also runs in CI's smoke subset."""
    return [
        pytest.param(broker, pool, id=f"{broker}-{pool}", marks=pytest.mark.smoke)
        if (broker, pool) == smoke
        else pytest.param(broker, pool, id=f"{broker}-{pool}")
        for broker, pool in pairs
    ]


@dataclass
class Stack:
    """A broker the case runs against: what workers and publishers need, and what it holds."""

    broker: str
    url: str
    #: environment for workers and producer processes
    env: dict[str, str]
    #: publish ``count`` tasks named ``task`` of ``seconds`` each on a queue; their keys
    publish: Callable[[str, str, int, float], list[str]]
    #: messages of a queue still at the broker (waiting, or delivered and not acknowledged)
    outstanding: Callable[[str], int]


def redis_stack(url: str, *, visibility_timeout_s: float, use_broker: Callable[..., Any]) -> Stack:
    # kombu looks for messages past their visibility timeout at most every
    # unacked_restore_throttle polls; every poll here, so a killed worker's come back soon. The
    # scan takes a lock that lives unacked_mutex_expire seconds (300 by default): a worker killed
    # while it holds the lock must not stop every scan for the rest of the test.
    options = {
        "visibility_timeout": visibility_timeout_s,
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": 2,
    }
    use_broker(url, options)

    def outstanding(queue: str) -> int:
        client = redis.Redis.from_url(url)
        waiting = sum(
            int(client.llen(key)) for key in client.scan_iter(match=f"{queue}*") if key != b"_"
        )
        unacked = sum(
            1 for value in client.hvals("unacked") if json.loads(value)[2] == queue
        )  # kombu keeps [message, exchange, routing key] per delivery tag
        return waiting + unacked

    return Stack(
        "redis",
        url,
        {"DJWORKER_BROKER_URL": url, "DJWORKER_BROKER_TRANSPORT_OPTIONS": json.dumps(options)},
        publish_here,
        outstanding,
    )


def amqp_stack(url: str, *, use_broker: Callable[..., Any]) -> Stack:
    use_broker(url)

    vhost = amqp_vhost_of(url)

    def outstanding(queue: str) -> int:
        return amqp_queue_messages(vhost, queue)

    return Stack("amqp", url, {"DJWORKER_BROKER_URL": url}, publish_here, outstanding)


def django_stack(
    queue_url: str, *, env: dict[str, str], visibility_timeout_s: float, **options: object
) -> Stack:
    """``django://`` with its queue table in the database at ``queue_url``.

    ``env`` names the Django database (and any other) for workers and producers, which are
    processes of their own here: the test's own database is not where the queue is.
    """
    env = {
        **env,
        "DJWORKER_BROKER_URL": "django://",
        "DJWORKER_BROKER_TRANSPORT_OPTIONS": json.dumps(
            {"visibility_timeout": visibility_timeout_s, **options}
        ),
    }

    def publish_there(queue: str, task: str, count: int, seconds: float) -> list[str]:
        return publish(queue=queue, prefix="k", count=count, seconds=seconds, task=task, env=env)

    def outstanding(queue: str) -> int:
        with psycopg.connect(queue_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM djworker_queuemessage WHERE queue = %s", (queue,)
            ).fetchone()
            assert row is not None
            return int(row[0])

    return Stack("django", "django://", env, publish_there, outstanding)


#: seconds an unacknowledged message stays invisible; above a wave of tasks plus the worker's
#: prefetch wait on redis, which does not renew it; short, since a killed worker's messages
#: come back only after it
REDIS_VISIBILITY_TIMEOUT_S = 5.0
#: ``django://`` renews its leases while the worker lives, so it can be shorter
DJANGO_VISIBILITY_TIMEOUT_S = 5.0


def stack_for(request: pytest.FixtureRequest, broker: str) -> Stack:
    """The stack named ``broker`` (redis, amqp or django) on the servers a test may use."""
    use_broker = request.getfixturevalue("use_broker")
    if broker == "redis":
        return redis_stack(
            request.getfixturevalue("redis_url"),
            visibility_timeout_s=REDIS_VISIBILITY_TIMEOUT_S,
            use_broker=use_broker,
        )
    if broker == "amqp":
        return amqp_stack(request.getfixturevalue("amqp_url"), use_broker=use_broker)
    if broker == "django":
        database = request.getfixturevalue("private_postgres")
        return django_stack(
            database.url, env=database.env, visibility_timeout_s=DJANGO_VISIBILITY_TIMEOUT_S
        )
    raise ValueError(f"broker must be redis, amqp or django; got {broker!r}")


def publish_here(queue: str, task: str, count: int, seconds: float) -> list[str]:
    """Publish from the test process (through the broker ``use_broker`` set)."""
    from djworker.task_definition import get_task
    from tests.taskapp import fault_tasks  # noqa: F401 - registers the faults.* tasks

    definition = get_task(task)
    keys = [f"k{i}" for i in range(count)]
    for key in keys:
        definition.apply_async((key, seconds), queue=queue)
    return keys


@dataclass
class FaultCase:
    """One run of a fault case; see the module docstring for its course."""

    name: str
    stack: Stack
    pool: str
    log: ExecutionLog
    worker_factory: Callable[..., WorkerProcess]
    tasks: int = TASKS
    concurrency: int = CONCURRENCY
    task: str = "faults.run"
    task_seconds: float = TASK_SECONDS
    queue: str = field(default_factory=unique_queue)
    keys: list[str] = field(default_factory=list)
    workers: list[WorkerProcess] = field(default_factory=list)
    running_at_fault: set[str] = field(default_factory=set)
    #: runs that had returned when the fault was first noted (0 unless the machine is so slow
    #: that a task of the first wave ended before the test could inject the fault)
    completed_before_fault: int | None = None
    started_at: float = field(default_factory=time.monotonic)

    def start_worker(self, *args: str) -> WorkerProcess:
        worker = self.worker_factory(
            "--pool",
            self.pool,
            "-c",
            str(self.concurrency),
            "-Q",
            self.queue,
            *args,
            env={**self.stack.env, **self.log.env},
        )
        self.workers.append(worker)
        return worker

    def publish_and_fill(self) -> WorkerProcess:
        """Publish the batch, start a worker and wait until its first wave runs."""
        self.keys = self.stack.publish(self.queue, self.task, self.tasks, self.task_seconds)
        worker = self.start_worker()
        self.wait_until_busy()
        return worker

    def wait_until_busy(self) -> None:
        wait_for(
            lambda: len(self.log.running()) >= self.concurrency,
            timeout_s=60,
            what=f"{self.concurrency} tasks running",
        )

    def _completed(self) -> bool:
        return not self.log.unfinished(self.keys) and self.stack.outstanding(self.queue) == 0

    def _drained(self) -> bool:
        return self.stack.outstanding(self.queue) == 0 and not self.log.running()

    def state(self) -> str:
        """What the case sees now, for a failure message."""
        outputs = "\n".join(
            f"--- worker {i} (exit {w.process.poll() if w.process else None}):\n{w.output[-4000:]}"
            for i, w in enumerate(self.workers)
        )
        return (
            f"unfinished={self.log.unfinished(self.keys)} running={sorted(self.log.running())} "
            f"at broker={self.stack.outstanding(self.queue)} duplicated={self.log.duplicated()} "
            f"running at fault={sorted(self.running_at_fault)}\n{outputs}"
        )

    def fault_hits(self) -> None:
        """Note the tasks running now, before and again after injecting the fault.

        They are the only ones allowed to run twice.
        """
        if self.completed_before_fault is None:
            self.completed_before_fault = sum(self.log.completions().values())
        self.running_at_fault |= self.log.running()

    def finish(self, *, expect_lost: bool = False) -> Outcome:
        """Wait until every key completed and the broker is empty, then stop workers warmly."""
        if expect_lost:
            done, what = self._drained, "the broker to be empty and no task running"
        else:
            done, what = self._completed, "every task to complete and the broker to be empty"
        try:
            wait_for(done, timeout_s=RECOVERY_TIMEOUT_S, interval_s=0.2, what=what)
        except AssertionError as timed_out:
            raise AssertionError(f"{timed_out}\n{self.state()}") from None
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.signal(signal.SIGTERM)
                assert worker.wait(60) == 0, worker.output[-3000:]
        outcome = Outcome(
            case=self.name,
            broker=self.stack.broker,
            pool=self.pool,
            tasks=len(self.keys),
            left_at_broker=self.stack.outstanding(self.queue),
            lost=self.log.unfinished(self.keys),
            duplicated=self.log.duplicated(),
            running_at_fault=self.running_at_fault,
            completed_before_fault=self.completed_before_fault or 0,
            seconds=time.monotonic() - self.started_at,
        )
        outcome.record()
        return outcome


class DuplicatesBeyondTheRunningTasks(AssertionError):
    """A task ran again that was not running at the fault (a case may expect it, by name)."""


@dataclass
class Outcome:
    """What a fault case counted from the side channel and the broker."""

    case: str
    broker: str
    pool: str
    tasks: int
    left_at_broker: int
    lost: list[str]
    duplicated: dict[str, int]
    running_at_fault: set[str]
    completed_before_fault: int
    seconds: float

    @property
    def duplicates(self) -> int:
        """Runs beyond the first, over all keys."""
        return sum(n - 1 for n in self.duplicated.values())

    @property
    def unexpected_duplicates(self) -> dict[str, int]:
        """Keys that ran twice without running at the fault, or ran more than twice."""
        return {
            key: n
            for key, n in self.duplicated.items()
            if key not in self.running_at_fault or n > 2
        }

    def assert_nothing_lost_and_duplicates_only_where_running(self) -> None:
        assert self.lost == [], f"never completed: {self.lost}"
        self.assert_duplicates_only_where_running()

    def assert_duplicates_only_where_running(self) -> None:
        assert self.left_at_broker == 0, f"{self.left_at_broker} messages left at the broker"
        if self.unexpected_duplicates or self.duplicates > len(self.running_at_fault):
            raise DuplicatesBeyondTheRunningTasks(
                f"ran again though not running at the fault ({sorted(self.running_at_fault)}; "
                f"{self.completed_before_fault} runs had returned before it): "
                f"{self.unexpected_duplicates}; {self.duplicates} duplicate runs"
            )

    def record(self) -> None:
        path = os.environ.get("DJWORKER_FAULT_FIGURES")
        if not path:
            return
        figures = {
            "case": self.case,
            "broker": self.broker,
            "pool": self.pool,
            "tasks": self.tasks,
            "lost": len(self.lost),
            "duplicates": self.duplicates,
            "running_at_fault": len(self.running_at_fault),
            "left_at_broker": self.left_at_broker,
            "seconds": round(self.seconds, 1),
        }
        with open(path, "a") as f:
            f.write(json.dumps(figures) + "\n")
