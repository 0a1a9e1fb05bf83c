"""The pool base class keeps the size; a pool's hooks only start or retire slots."""

from __future__ import annotations

import pytest

from djworker.concurrency.base import BasePool
from djworker.exceptions import ConfigurationError, NotSupportedByPool
from djworker.execution import TaskExecutor
from djworker.job import Job


class CountingPool(BasePool):
    alias = "counting"
    supports_autoscale = True

    def __init__(self, **kwargs: object) -> None:
        super().__init__(on_outcome=print, executor=TaskExecutor(), **kwargs)  # type: ignore[arg-type]
        self.hooks: list[tuple[str, int]] = []

    def start(self) -> None:
        return None

    def stop(self, *, graceful: bool, timeout_s: float | None = None) -> list[Job]:
        return []

    def apply_async(self, job: Job) -> None:
        return None

    @property
    def size(self) -> int:
        return self.target_size

    @property
    def busy(self) -> int:
        return 0

    def on_grow(self, n: int) -> None:
        self.hooks.append(("grow", n))

    def on_shrink(self, n: int) -> None:
        self.hooks.append(("shrink", n))


class FixedPool(CountingPool):
    supports_autoscale = False


def test_grow_and_shrink_count_the_size_and_call_the_hooks_with_what_changed() -> None:
    pool = CountingPool(size=2, max_size=5)
    pool.grow(2)
    pool.shrink(3)
    assert (pool.size, pool.hooks) == (1, [("grow", 2), ("shrink", 3)])


def test_shrink_keeps_one_slot_and_calls_no_hook_when_nothing_changes() -> None:
    pool = CountingPool(size=3)
    pool.shrink(10)
    pool.shrink(1)
    assert (pool.size, pool.hooks) == (1, [("shrink", 2)])


def test_growing_past_the_maximum_size_is_refused_before_any_hook_runs() -> None:
    pool = CountingPool(size=4, max_size=5)
    with pytest.raises(ConfigurationError, match="cannot grow the pool of 4 by 2"):
        pool.grow(2)
    assert (pool.size, pool.hooks) == (4, [])


def test_a_pool_without_autoscale_refuses_to_resize_by_its_name() -> None:
    pool = FixedPool(size=2)
    with pytest.raises(NotSupportedByPool, match="the counting pool cannot grow"):
        pool.grow(1)
    with pytest.raises(NotSupportedByPool, match="the counting pool cannot shrink"):
        pool.shrink(1)
    assert pool.size == 2
