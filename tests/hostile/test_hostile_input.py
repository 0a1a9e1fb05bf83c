"""No input stops a worker: hostile messages published with plain kombu, past ``.delay()``.

One long-running worker per broker and pool gets every class of bad message (``cases.classes``)
and a seeded fuzz of envelopes, bodies and raw transport payloads (``cases.fuzz``), then one good
message. The good message must run exactly once while the worker stays alive, no message may
run twice or stay in the queue, a finished task's row must stay as it was, and every row the
bad messages left must still be readable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.db import connection
from django.test import Client
from kombu import Producer

from djworker.broker import Broker
from djworker.broker_schemes import BrokerConnection
from djworker.models import QueueMessage, TaskResult
from djworker.result import AsyncResult
from tests.faults.conftest import ExecutionLog
from tests.hostile import cases
from tests.integration.harness import WorkerProcess, unique_queue, wait_for
from tests.taskapp import fault_tasks

pytestmark = [pytest.mark.hostile, pytest.mark.integration, pytest.mark.django_db(transaction=True)]

#: how much more memory the worker may hold at its peak than when it was ready (the bomb
#: decompresses to 200 MB)
MEMORY_HEADROOM_KIB = 120 * 1024


def broker_url(name: str, request: pytest.FixtureRequest) -> str:
    return "django://" if name == "django" else str(request.getfixturevalue(f"{name}_url"))


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmHWM for pid {pid}")


class Publisher:
    """Plain kombu (and, for raw payloads, the transport's own storage) on one queue."""

    def __init__(self, name: str, url: str, queue: str, broker: Broker) -> None:
        self.name, self.url, self.queue, self.broker = name, url, queue, broker
        self._connect()
        self.redis = redis.Redis.from_url(url) if name == "redis" else None

    def _connect(self) -> None:
        self.connection = BrokerConnection(self.url)
        self.producer = Producer(self.connection, auto_declare=False)
        self.producer.maybe_declare(self.broker.queue(self.queue))

    def send(self, case: cases.Case) -> bool:
        """Publish ``case``; False if the broker itself refused it (it then never reaches us)."""
        try:
            self._send(case)
        except Exception:
            # py-amqp cannot encode a header integer wider than 64 bits, and RabbitMQ closes
            # the connection on some headers: such an input cannot reach a worker at all.
            self.connection.release()
            self._connect()
            return False
        return True

    def _send(self, case: cases.Case) -> None:
        if case.raw is not None:
            if self.redis is not None:
                self.redis.lpush(self.queue, case.raw)
            else:
                raw = (
                    case.raw.decode("utf-8", "replace") if isinstance(case.raw, bytes) else case.raw
                )
                QueueMessage.objects.create(queue=self.queue, payload=raw.replace("\x00", ""))
            return
        options: dict[str, Any] = {"serializer": "json", **case.options}
        self.producer.publish(case.body, routing_key=self.queue, **options)

    def left(self) -> int:
        """Messages of the queue still waiting, held or unacknowledged."""
        if self.name == "django":
            return QueueMessage.objects.filter(queue=self.queue).count()
        if self.redis is not None:
            waiting = sum(
                int(self.redis.llen(key)) for key in self.redis.scan_iter(f"{self.queue}*")
            )
            unacked = sum(
                1
                for value in self.redis.hvals("unacked")
                if value.rstrip().endswith(f'"{self.queue}"]'.encode())
            )
            return waiting + unacked
        channel = self.connection.default_channel
        return int(channel.queue_declare(self.queue, passive=True).message_count)

    def close(self) -> None:
        self.connection.release()
        if self.redis is not None:
            self.redis.close()


@pytest.mark.parametrize("pool", [pytest.param("threads", marks=pytest.mark.smoke), "prefork"])
def test_no_hostile_input_stops_the_worker_and_the_good_message_behind_them_runs_once(
    pool: str,
    broker_name: str,
    request: pytest.FixtureRequest,
    use_broker: Callable[..., Broker],
    worker_factory: Callable[..., WorkerProcess],
    execution_log: ExecutionLog,
    admin_client: Client,
) -> None:
    url = broker_url(broker_name, request)
    broker = use_broker(url)
    queue = unique_queue("hostile")
    worker = worker_factory(
        "--pool", pool, "-c", "2", "-Q", queue, broker_url=url, env=execution_log.env
    )
    assert worker.process is not None
    ready_rss_kib = peak_rss_kib(worker.process.pid)

    finished = fault_tasks.run.apply_async(("finished",), queue=queue)
    wait_for(lambda: finished.status == "SUCCESSFUL", what="the first task to finish")
    finished_row = TaskResult.objects.values().get(id=finished.id)

    inputs = [  # a published input that was not handled fails the test
        case
        for case in cases.classes(queue, finished.id) + cases.fuzz(queue)
        if case.applies_to(broker_name)
    ]
    publisher = Publisher(broker_name, url, queue, broker)
    try:
        published = [case for case in inputs if publisher.send(case)]
        sentinel = fault_tasks.run.apply_async(("sentinel",), queue=queue)

        def sentinel_ran() -> bool:
            assert worker.process is not None and worker.process.poll() is None, "worker exited"
            return sentinel.status == "SUCCESSFUL"

        wait_for(
            sentinel_ran,
            timeout_s=180,
            what="the good message behind the hostile ones to run",
        )
        wait_for(lambda: publisher.left() == 0, timeout_s=60, what="the queue to be empty")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the worker said:\n{worker.output[-8000:]}") from None
    finally:
        publisher.close()

    out = worker.output
    assert worker.process.poll() is None, out[-5000:]
    assert "lost the broker connection" not in out, out[-5000:]
    counts = execution_log.counts()
    assert counts["sentinel"] == 1 and counts["finished"] == 1, counts
    assert {key: n for key, n in counts.items() if n > 1} == {}
    # A refusal never overwrites a finished row.
    assert TaskResult.objects.values().get(id=finished.id) == finished_row
    # Every row the hostile messages left can be read, one by one and in the admin's list.
    for case in published:
        if case.task_id:
            assert AsyncResult(case.task_id).status in ("READY", "FAILED", "SUCCESSFUL", "RUNNING")
    assert admin_client.get("/admin/djworker/taskresult/").status_code == 200
    # Refused with a reason, and recorded although their values could not be stored as sent.
    sent_ids = {case.task_id for case in published}
    for task_id in ("c1-nul", "c1-nan", "c1-name", "c7-nul", "c7-sur", "c3-eta-early", "c3-enq"):
        if task_id in sent_ids:
            assert TaskResult.objects.get(id=task_id).status == "FAILED", task_id
    grown_kib = peak_rss_kib(worker.process.pid) - ready_rss_kib
    assert grown_kib < MEMORY_HEADROOM_KIB, f"the worker grew by {grown_kib} KiB"
    print(
        f"\nhostile inputs: broker={broker_name} pool={pool} database={connection.vendor} "
        f"tried={len(inputs)} published={len(published)} handled={len(published)}"
    )
