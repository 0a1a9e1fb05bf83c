"""kombu's ``memory://`` transport, keeping a log of what the worker answered for each message.

A real in-process broker: messages are published, delivered, acknowledged, rejected and
requeued by kombu's own virtual transport. Each answer is also written to ``LOG`` with the state
of the message's result row at that moment, so a test can tell an acknowledgement that came
after the outcome was stored from one that came before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kombu import Connection, serialization
from kombu.transport import memory

from djworker.broker import Broker
from djworker.models import TaskResult


@dataclass(frozen=True)
class Answer:
    action: str  # publish, ack, reject, requeue
    task_id: str
    attempt: int
    #: the status of the result row when the answer was given ("" if there was no row)
    row_status: str


LOG: list[Answer] = []


def _answer(action: str, body: Any) -> None:
    body = body if isinstance(body, dict) else {}
    task_id = str(body.get("id", ""))
    status = TaskResult.objects.filter(id=task_id).values_list("status", flat=True).first()
    LOG.append(Answer(action, task_id, int(body.get("attempt", -1)), status or ""))


class Channel(memory.Channel):
    def basic_publish(self, message: Any, exchange: str, routing_key: str, **kwargs: Any) -> Any:
        _answer("publish", self._payload(message))
        return super().basic_publish(message, exchange, routing_key, **kwargs)

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        _answer("ack", self._delivered(delivery_tag))
        super().basic_ack(delivery_tag, multiple)

    def basic_reject(self, delivery_tag: int, requeue: bool = False) -> None:
        _answer("requeue" if requeue else "reject", self._delivered(delivery_tag))
        super().basic_reject(delivery_tag, requeue)

    def _delivered(self, delivery_tag: int) -> Any:
        try:
            return self.qos.get(delivery_tag).payload
        except Exception:  # a body the test made undecodable on purpose
            return None

    def _payload(self, message: dict[str, Any]) -> Any:
        try:
            return serialization.loads(
                message["body"], message["content-type"], message["content-encoding"]
            )
        except Exception:  # a body the test made undecodable on purpose
            return None


class Transport(memory.Transport):
    Channel = Channel


class RecordingBroker(Broker):
    """djworker's broker on the recording transport."""

    def __init__(self) -> None:
        super().__init__(url="memory://")

    def connection(self) -> Connection:
        return Connection("memory://", transport=Transport)


def answers(task_id: str) -> list[tuple[str, int, str]]:
    """(action, attempt, row status) for each answer given for ``task_id``, in order."""
    return [(a.action, a.attempt, a.row_status) for a in LOG if a.task_id == task_id]
