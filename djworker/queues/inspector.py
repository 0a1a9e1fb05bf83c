"""The interface every broker's queue inspector offers, and the figures it returns.

A module of its own so that the inspectors (``database.py``, ``redis.py``, ``amqp.py``) build on
it without importing the package that chooses among them (``djworker.queues.inspector_for``).
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from djworker.broker import Broker

__all__ = ["UNKNOWN", "Count", "QueueInspector", "QueueStats", "Unknown"]


class Unknown(enum.Enum):
    """The broker cannot tell this figure (shown as "unknown", never as 0)."""

    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


UNKNOWN: Final = Unknown.UNKNOWN

Count = int | Unknown


@dataclass(frozen=True)
class QueueStats:
    """One queue as its broker sees it now.

    * ``ready``: messages any consumer may take now;
    * ``delayed``: messages waiting for their countdown/ETA;
    * ``reserved``: messages delivered to a worker and not yet acknowledged (where a broker
      hands ETA messages to a worker early, those count as delayed when it can tell them apart);
    * ``oldest_age_s``: seconds since the oldest ready message was published, ``None`` when
      nothing is ready;
    * ``consumers``: connections consuming the queue.
    """

    name: str
    ready: Count
    delayed: Count
    reserved: Count
    oldest_age_s: float | Unknown | None
    consumers: Count = UNKNOWN

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly: unknown figures become the string "unknown"."""
        return {
            key: (str(value) if isinstance(value, Unknown) else value)
            for key, value in (
                ("name", self.name),
                ("ready", self.ready),
                ("delayed", self.delayed),
                ("reserved", self.reserved),
                ("oldest_age_s", self.oldest_age_s),
                ("consumers", self.consumers),
            )
        }


class QueueInspector(ABC):
    """Reads and purges the queues of one broker. Build one with ``inspector_for``."""

    #: a short name for the broker family, shown by the admin and the commands
    family: str = ""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    @abstractmethod
    def stats(self, names: Iterable[str]) -> list[QueueStats]:
        """Figures for each named queue, in the order given; a missing queue is empty."""

    @abstractmethod
    def purge(self, name: str) -> int:
        """Delete the messages of ``name`` that no worker holds; returns how many.

        Messages delivered to a worker and not yet acknowledged are left alone: the worker
        answers for them.
        """

    def known_queues(self) -> list[str]:
        """Queue names the broker itself knows of (may be empty where it cannot list them)."""
        return []
