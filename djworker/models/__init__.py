"""djworker's tables: task results, the ``django://`` broker's messages, and the control plane."""

from djworker.models import former_names  # noqa: F401  (the old admin URLs' proxy model)
from djworker.models.broker import BrokerQueue, QueueMessage
from djworker.models.maintenance import MaintenanceLease
from djworker.models.results import TaskResult, TaskStatus
from djworker.models.workers import (
    CommandAction,
    CommandStatus,
    ControlCommand,
    Dashboard,
    Worker,
    WorkerProfile,
    WorkerState,
)

#: the model's name before it was ``WorkerProfile``, kept so that projects' imports still work
WorkerConfig = WorkerProfile

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
    "WorkerProfile",
    "WorkerState",
]
