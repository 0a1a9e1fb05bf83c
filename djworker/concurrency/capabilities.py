"""What a pool can do, as class attributes: the capability flags every pool declares.

``BasePool`` inherits them; they sit in a module of their own so that the registry and
``check_settings`` can read a pool's flags without depending on the pool interface.
"""

from __future__ import annotations

from typing import ClassVar


class PoolCapabilities:
    """The capability flags of a pool class, with their defaults (a pool sets what it honours)."""

    #: the name used with ``--pool`` (custom pools may leave the class name)
    alias: ClassVar[str] = ""
    #: runs jobs on greenlets of a monkey-patched process
    is_green: ClassVar[bool] = False
    #: jobs run outside the main thread, so OS signals reach the worker promptly
    signal_safe: ClassVar[bool] = True
    #: jobs run in child processes
    uses_processes: ClassVar[bool] = False
    #: the only size this pool can have, if it has one (used when no concurrency is given)
    fixed_size: ClassVar[int | None] = None
    #: ``apply_async`` runs the job before returning (the consumer blocks meanwhile)
    blocks_consumer: ClassVar[bool] = False
    #: ``grow``/``shrink`` work, so ``--autoscale`` may be used
    supports_autoscale: ClassVar[bool] = False
    #: ``Job.limits.soft_s`` raises ``SoftTimeLimitExceeded`` inside the task
    supports_soft_time_limit: ClassVar[bool] = False
    #: ``Job.limits.hard_s`` stops the task and records ``TimeLimitExceeded``
    supports_hard_time_limit: ClassVar[bool] = False
    #: ``terminate_job`` stops a running task
    supports_terminate: ClassVar[bool] = False
    #: ``max_tasks_per_child`` / ``max_memory_per_child_kib`` replace slots
    supports_recycling: ClassVar[bool] = False

    @classmethod
    def describe(cls) -> str:
        return cls.alias or f"{cls.__module__}:{cls.__qualname__}"

    @classmethod
    def limits(cls) -> dict[str, bool]:
        """Which limits this pool enforces, by the name the banner gives them."""
        return {
            "soft time limit": cls.supports_soft_time_limit,
            "hard time limit": cls.supports_hard_time_limit,
            "max tasks/memory per child": cls.supports_recycling,
        }
