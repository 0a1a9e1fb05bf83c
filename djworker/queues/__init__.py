"""What each broker can say about its queues, through one interface, and purging them.

The admin's queue page and the ``djworker status`` / ``djworker purge`` commands read queue
depths here, never from result rows (a READY row is not a message: a purged or lost message
leaves its row, and a message published elsewhere has none).

One ``QueueInspector`` per broker family: ``django://`` (``database.py``), Redis
(``redis.py``) and AMQP (``amqp.py``), each named by its URL scheme's profile
(``djworker.broker_schemes.PROFILES``). A figure a broker cannot give is ``UNKNOWN``, never 0.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from djworker.broker_schemes import PROFILES
from djworker.queues.inspector import UNKNOWN, QueueInspector, QueueStats, Unknown

if TYPE_CHECKING:
    from djworker.broker import Broker

__all__ = [
    "UNKNOWN",
    "QueueInspector",
    "QueueStats",
    "Unknown",
    "inspector_for",
]


def inspector_for(broker: Broker) -> QueueInspector:
    """The inspector for ``broker``'s transport, as its scheme's profile names it."""
    if not broker.profile.inspector:
        known = ", ".join(name for name, profile in PROFILES.items() if profile.inspector)
        raise ValueError(
            f"no queue inspector for broker scheme {broker.scheme!r}; djworker inspects {known}"
        )
    module_name, _, attr = broker.profile.inspector.partition(":")
    inspector_class: type[QueueInspector] = getattr(importlib.import_module(module_name), attr)
    return inspector_class(broker)
