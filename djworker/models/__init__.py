"""djworker's tables: task results, the ``django://`` broker's messages, and the control plane."""

from djworker.models.broker import BrokerQueue, QueueMessage
from djworker.models.maintenance import MaintenanceLease
from djworker.models.results import TaskResult, TaskStatus
from djworker.models.workers import (
    CommandAction,
    CommandStatus,
    ControlCommand,
    Dashboard,
    Worker,
    WorkerConfig,
    WorkerState,
)

__all__ = [
    "BrokerQueue",
    "CommandAction",
    "CommandStatus",
    "ControlCommand",
    "Dashboard",
    "MaintenanceLease",
    "QueueMessage",
    "TaskResult",
    "TaskStatus",
    "Worker",
    "WorkerConfig",
    "WorkerState",
]
