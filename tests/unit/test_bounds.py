"""Every pool size is bounded by settings.DJWORKER["MAX_CONCURRENCY"], in every layer, and a
profile names only a built-in pool or an allow-listed custom one; each refusal is one line."""

from __future__ import annotations

from typing import Any

import pytest

from djworker import bounds, conf
from djworker.concurrency.threads import ThreadPool
from djworker.exceptions import ConfigurationError
from djworker.execution import TaskExecutor

BOUND = "the maximum pool size 1000 (settings.DJWORKER['MAX_CONCURRENCY'])"


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ({"cli": {"concurrency": 1001}}, f"--concurrency 1001 (from cli) is above {BOUND}"),
        (
            {"environ": {"DJWORKER_CONCURRENCY": "5000"}},
            f"--concurrency 5000 (from env) is above {BOUND}",
        ),
        (
            {"admin": {"concurrency": 2**31}},
            f"--concurrency 2147483648 (from admin) is above {BOUND}",
        ),
        ({"cli": {"autoscale": (1, 1001)}}, f"--autoscale 1001 (from cli) is above {BOUND}"),
        (
            {"djworker_settings": {"MAX_CONCURRENCY": 8, "AUTOSCALE": "2,9"}},
            "--autoscale 9 (from settings) is above the maximum pool size 8 "
            "(settings.DJWORKER['MAX_CONCURRENCY'])",
        ),
    ],
)
def test_a_size_above_the_maximum_is_refused_naming_the_value_its_layer_and_the_bound(
    layers: dict[str, Any], message: str
) -> None:
    layers.setdefault("environ", {})
    with pytest.raises(ConfigurationError) as info:
        conf.load_config(**layers)
    assert str(info.value) == message


def test_sizes_up_to_the_maximum_are_accepted() -> None:
    config = conf.load_config(
        cli={"concurrency": 12, "autoscale": (2, 12)},
        environ={},
        djworker_settings={"MAX_CONCURRENCY": 12},
    )
    assert config.max_concurrency == 12 and config.autoscale == (2, 12)
    assert conf.load_config(environ={}, djworker_settings={}).max_concurrency == 1000


@pytest.mark.parametrize("value", [0, -1, "8", 2.5, True, 2**31])
def test_a_bad_max_concurrency_setting_is_refused(value: object) -> None:
    with pytest.raises(
        conf.SettingsError, match=r"MAX_CONCURRENCY'\] expects a whole number from 1 to 2147483647"
    ):
        conf.load_config(environ={}, djworker_settings={"MAX_CONCURRENCY": value})


@pytest.mark.parametrize(("text", "expected"), [("", 1), ("3", 3), (" 1000 ", 1000)])
def test_the_n_of_a_grow_or_shrink_is_a_whole_number_up_to_the_bound(
    text: str, expected: int
) -> None:
    assert bounds.parse_step(text, bound=1000) == expected


@pytest.mark.parametrize("text", ["0", "-1", "abc", "1.5", "1001", "2147483647", "9" * 5000])
def test_a_bad_n_is_refused_naming_the_value_and_the_bound(text: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        bounds.parse_step(text, bound=1000)
    message = str(info.value)
    assert message.startswith(
        "N must be a whole number from 1 to 1000 (settings.DJWORKER['MAX_CONCURRENCY']); got '"
    )
    assert len(message) < 150 and "\n" not in message


def test_the_pool_itself_refuses_a_size_or_a_growth_above_its_maximum() -> None:
    with pytest.raises(ConfigurationError, match="pool size 9 is above the maximum pool size 8"):
        ThreadPool(size=9, on_outcome=lambda outcome: None, executor=TaskExecutor(), max_size=8)
    pool = ThreadPool(size=2, on_outcome=lambda outcome: None, executor=TaskExecutor(), max_size=8)
    with pytest.raises(
        ConfigurationError,
        match=r"cannot grow the pool of 2 by 2147483647: the maximum pool size is 8",
    ):
        pool.grow(2**31 - 1)
    assert pool.size == 2


@pytest.mark.parametrize(
    ("pool", "allowed", "message"),
    [
        (
            "tests.taskapp.exits_on_import:Pool",
            (),
            "profile 'p': pool 'tests.taskapp.exits_on_import:Pool' is not one of the custom "
            "pools a profile may name (settings.DJWORKER['CUSTOM_POOLS']: none)",
        ),
        (
            "custom",
            ("example_project.pools:ExecutorPool",),
            "profile 'p': unknown pool 'custom'; choose one of solo, threads, prefork, "
            "processes, gevent, eventlet, or a custom pool from settings.DJWORKER['CUSTOM_POOLS'] "
            "(example_project.pools:ExecutorPool)",
        ),
    ],
)
def test_a_profile_naming_a_pool_outside_the_allow_list_is_refused_without_importing_it(
    pool: str, allowed: tuple[str, ...], message: str
) -> None:
    import sys

    with pytest.raises(ConfigurationError) as info:
        conf.load_config(
            admin={"pool": pool},
            environ={},
            djworker_settings={"CUSTOM_POOLS": list(allowed)},
            profile_name="p",
        )
    assert str(info.value) == message
    assert "tests.taskapp.exits_on_import" not in sys.modules


def test_an_allow_listed_pool_in_a_profile_and_any_pool_on_the_command_line_are_accepted() -> None:
    allowed = {"CUSTOM_POOLS": ["example_project.pools:ExecutorPool"]}
    config = conf.load_config(
        admin={"pool": "example_project.pools:ExecutorPool"}, environ={}, djworker_settings=allowed
    )
    assert config.pool == "example_project.pools:ExecutorPool"
    assert config.custom_pools == ("example_project.pools:ExecutorPool",)
    config = conf.load_config(
        cli={"pool": "tests.contract.broken_pools:HalfPool"}, environ={}, djworker_settings={}
    )
    assert config.sources["pool"] == "cli"


@pytest.mark.parametrize("value", ["example_project.pools:ExecutorPool", ["not a path"], [3]])
def test_a_bad_custom_pools_setting_is_refused(value: object) -> None:
    with pytest.raises(
        conf.SettingsError,
        match=r"CUSTOM_POOLS'\] expects a list of 'module.path:Class' strings; got",
    ):
        conf.load_config(environ={}, djworker_settings={"CUSTOM_POOLS": value})
