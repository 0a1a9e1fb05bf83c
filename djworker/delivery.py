"""``Delivery``: one received message, and how the worker answers the broker for it.

The consumer keeps a ``Delivery`` for every message it received and has not settled. When the
run reports, the delivery is *answered*: acknowledged, handed back to its queue, rejected for
good, or acknowledged after its retry was published. A message that cannot run at all is
*refused*: rejected, with the reason recorded where it carries a task id. Only the consumer's
thread calls these, because only it may touch the broker connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kombu.message import Message

from djworker import result_store
from djworker.job import Outcome, OutcomeKind
from djworker.log_safety import get_logger
from djworker.message import Envelope
from djworker.task_lookup import refusal

if TYPE_CHECKING:
    from djworker.broker import Broker

logger = get_logger(__name__)


@dataclass
class Delivery:
    """A received message the consumer still answers for."""

    envelope: Envelope
    message: Message
    acked: bool = False
    #: its connection was lost: the broker delivers it again, so it is neither acked nor retried
    orphaned: bool = False

    @property
    def call(self) -> tuple[str, int]:
        """The call this message carries: a redelivery has the same, a retry the next attempt."""
        return (str(self.envelope["id"]), int(self.envelope["attempt"]))

    def answer(self, outcome: Outcome, broker: Broker) -> None:
        """Acknowledge, hand back or retry the message of a finished run."""
        if self.orphaned and not self.acked:
            # Its connection is gone and the broker delivers it again: acking it on the dead
            # channel could only fail, and a retry published now would run it twice.
            return
        if outcome.kind is OutcomeKind.RETRY and outcome.retry_envelope is not None:
            try:
                broker.publish(outcome.retry_envelope)
            except Exception:
                logger.exception(
                    "id=%s retry could not be published; redelivering", outcome.task_id
                )
                self.give_back(broker)
                return
        if outcome.requeue:
            self.give_back(broker)
        elif outcome.reject and not self.acked:
            self.message.reject()  # for good: dead-lettered where the queue has a DLX
        elif not self.acked:
            self.message.ack()

    def give_back(self, broker: Broker) -> None:
        """Return the message to its queue; one acknowledged early is published again."""
        if not self.acked:
            self.message.requeue()
            return
        try:
            broker.publish(self.envelope)
        except Exception:
            # The message is gone from the broker and cannot be published: say so in full.
            logger.exception(
                "id=%s could not be handed back to the broker; envelope=%r",
                self.envelope["id"],
                self.envelope,
            )


def reject_undecodable(msg: Message, exc: Exception) -> None:
    """kombu's ``on_decode_error``: a body that no decoder accepts is rejected and logged."""
    logger.error(
        "rejected a message that could not be decoded (content_type=%.80r "
        "content_encoding=%.80r): %s",
        msg.content_type,
        msg.content_encoding,
        exc,
    )
    msg.reject()


def refuse(body: Any, msg: Message, exc: Exception) -> None:
    """Reject a message that cannot run, recording why where it carries an id.

    The message goes whether or not the record can be written: a refusal that came back each
    time its write failed would stop every message behind it.
    """
    recorded = result_store.record_refused(body, **refusal(exc))
    logger.error("rejected message (recorded=%s): %s", recorded, exc)
    msg.reject()
