from __future__ import annotations

from typing import Any

import pytest

from djworker.concurrency import check_pool_class, resolve_pool
from djworker.concurrency.base import BasePool
from djworker.concurrency.registry import POOLS, builtin_class, canonical
from djworker.concurrency.solo import SoloPool
from djworker.concurrency.threads import ThreadPool
from djworker.exceptions import ConfigurationError, PoolNotAvailable
from djworker.execution import TaskExecutor


def test_aliases_resolve_to_pool_classes() -> None:
    assert resolve_pool("solo") is SoloPool
    assert resolve_pool("threads") is ThreadPool


def test_an_unknown_alias_names_the_choices() -> None:
    with pytest.raises(PoolNotAvailable, match="unknown pool 'sol'; choose one of solo, threads"):
        resolve_pool("sol")


def test_a_dotted_path_loads_a_custom_pool() -> None:
    assert resolve_pool("djworker.concurrency.threads:ThreadPool") is ThreadPool


def test_custom_without_the_environment_variable_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DJWORKER_CUSTOM_POOL", raising=False)
    with pytest.raises(PoolNotAvailable, match=r"DJWORKER_CUSTOM_POOL=module\.path:Class"):
        resolve_pool("custom")


def test_a_class_that_is_not_a_pool_is_refused() -> None:
    with pytest.raises(
        ConfigurationError, match=r"must be a subclass of djworker\.concurrency\.base\.BasePool"
    ):
        check_pool_class(dict, "builtins:dict")


def test_a_pool_missing_methods_is_refused_naming_them() -> None:
    class HalfPool(BasePool):
        def start(self) -> None: ...

        def apply_async(self, job: Any) -> None: ...

    with pytest.raises(ConfigurationError, match="missing busy, stop"):
        check_pool_class(HalfPool, "x:HalfPool")


def test_recycling_options_are_refused_by_pools_that_cannot_recycle() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"--max-tasks-per-child and --max-memory-per-child need the prefork pool",
    ):
        ThreadPool(
            size=2, on_outcome=lambda o: None, executor=TaskExecutor(), max_tasks_per_child=10
        )


def test_the_solo_pool_refuses_more_than_one_slot() -> None:
    with pytest.raises(ConfigurationError, match="--concurrency must be 1, got 3"):
        SoloPool(size=3, on_outcome=lambda o: None, executor=TaskExecutor())


@pytest.mark.parametrize("alias", list(POOLS))
def test_a_pools_entry_names_a_green_library_exactly_when_its_class_is_green(alias: str) -> None:
    # djworker.green patches for the entries that name a library; the pool itself says it is
    # green: the two must agree, or a green pool would start unpatched (and refuse to run).
    assert (POOLS[alias].green is not None) == builtin_class(alias).is_green


def test_every_built_in_pool_says_what_work_it_suits_in_the_profile_form() -> None:
    own_names = {canonical(alias) for alias in POOLS}
    assert all(POOLS[name].guide.startswith(f"{name}: ") for name in own_names)
    ranks = [POOLS[name].guide_rank for name in own_names]
    assert len(set(ranks)) == len(ranks)
