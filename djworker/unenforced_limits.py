"""``UnenforcedLimits``: says when a call's own time limit runs on a pool that cannot enforce it.

A worker-wide limit the pool cannot enforce is refused at start (``check_settings``) and a
task's own limits are warned about in the banner (``worker.unenforced_task_limits``). A limit
given to one call (``apply_async(time_limit=...)``) is only seen when its message arrives, so
the consumer asks here before it hands the job to the pool. The task still runs, without the
limit; the warning names the task, the limit and the pools that would enforce it, once per task
and kind of limit so a busy task does not flood the log.
"""

from __future__ import annotations

from djworker.concurrency.capabilities import PoolCapabilities
from djworker.concurrency.registry import pools_with, spoken
from djworker.log_safety import get_logger
from djworker.message import Envelope

logger = get_logger(__name__)

#: envelope field -> (the capability flag that enforces it, what the pool would do at the limit)
_LIMITS = {
    "time_limit": ("supports_hard_time_limit", "stop the task at its hard time limit"),
    "soft_time_limit": ("supports_soft_time_limit", "interrupt the task at its soft time limit"),
}


class UnenforcedLimits:
    """Warns once per task name and kind of limit; used on the consumer's thread only."""

    def __init__(self) -> None:
        self._warned: set[tuple[str, str]] = set()

    def check(self, pool: type[PoolCapabilities] | PoolCapabilities, envelope: Envelope) -> None:
        """Log a warning for each limit of this call that ``pool`` ignores, if not yet said."""
        task = envelope["task"]
        for field, (flag, action) in _LIMITS.items():
            seconds = envelope.get(field)
            if not seconds or getattr(pool, flag) or (task, field) in self._warned:
                continue
            self._warned.add((task, field))
            logger.warning(
                "task=%s id=%s %s=%gs of this call is not enforced: the %s pool cannot %s, so "
                "the task runs without it (the %s pool can); said once per task",
                task,
                envelope["id"],
                field,
                seconds,
                pool.describe(),
                action,
                spoken(pools_with(flag)),
            )
