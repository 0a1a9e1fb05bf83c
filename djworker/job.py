"""What a pool is handed (``Job``) and what it hands back (``Outcome``).

Both are plain, picklable data so that every pool, including process pools, can carry them.
The consumer keeps the broker message; pools only ever see the ``Job``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from djworker.message import Envelope


@dataclass(frozen=True, slots=True)
class Limits:
    """Time limits for one run, in seconds; ``None`` means no limit."""

    soft_s: float | None = None
    hard_s: float | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """One task run handed to a pool.

    ``token`` identifies the job to the consumer (it maps back to the broker message);
    ``envelope`` is the validated message body (``djworker.message.Envelope``).
    """

    token: int
    envelope: Envelope
    limits: Limits = field(default_factory=Limits)
    hostname: str = ""
    #: deliveries of this message that may start (0: no cap), and who set it, for the reason
    max_deliveries: int = 0
    max_deliveries_from: str = ""
    #: the broker says an earlier delivery of this message was not acknowledged
    redelivered: bool = False

    @property
    def task_id(self) -> str:
        return str(self.envelope["id"])


class OutcomeKind(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    RETRY = "retry"
    # The pool could not run or finish the job (slot died, cancelled at shutdown).
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a job, reported by the pool to the consumer.

    For ``RETRY``, ``retry_envelope`` is the next message to publish. ``requeue`` asks the consumer
    to hand the original message back to the broker instead of acknowledging it; ``reject`` asks
    it to reject the message for good (RabbitMQ dead-letters it where the queue has a
    dead-letter exchange; other brokers drop it).
    """

    token: int
    task_id: str
    kind: OutcomeKind
    retry_envelope: Envelope | None = None
    retry_countdown_s: float | None = None
    requeue: bool = False
    reject: bool = False
    detail: str = ""


def soft_limit_below_hard(*, soft_s: float | None, hard_s: float | None) -> bool:
    """The time-limit rule: a soft limit must be below the hard one, or the hard kill would
    always come first and the soft limit could never fire. Unset (or 0) limits pass."""
    return not (soft_s and hard_s and soft_s >= hard_s)
