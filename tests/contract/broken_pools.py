"""Pools that must be refused: used by tests/contract/test_pool_selection.py."""

from __future__ import annotations

from djworker.concurrency.base import BasePool
from djworker.job import Job


class NotAPool:
    """Has the right name and nothing else."""


class HalfPool(BasePool):
    """Implements start and apply_async only."""

    def start(self) -> None:
        return None

    def apply_async(self, job: Job) -> None:
        return None
