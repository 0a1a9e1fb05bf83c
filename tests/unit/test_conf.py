from __future__ import annotations

import pytest

from djworker import conf, option_values
from djworker.exceptions import ConfigurationError


@pytest.mark.parametrize(
    ("text", "expected"), [("1,3", (1, 3)), ("3,1", (1, 3)), ("2,2", (2, 2)), (" 4 , 2 ", (2, 4))]
)
def test_autoscale_takes_either_order_and_the_smaller_number_is_the_minimum(
    text: str, expected: tuple[int, int]
) -> None:
    assert option_values.parse_autoscale(text) == expected


@pytest.mark.parametrize("text", ["3", "3,x", "0,2", "-1,2", "1,2,3", ""])
def test_bad_autoscale_values_are_refused_naming_the_value(text: str) -> None:
    if text == "":
        assert option_values.parse_autoscale(text) is None
        return
    with pytest.raises(
        ConfigurationError, match=r"--autoscale expects two positive integers like 1,3.*got"
    ):
        option_values.parse_autoscale(text)


@pytest.mark.parametrize(
    ("value", "kib"),
    [
        (204800, 204800),
        ("204800", 204800),
        ("200MB", 204800),
        ("200M", 204800),
        ("1.5G", 1572864),
        ("512KiB", 512),
    ],
)
def test_memory_sizes_are_kib_or_carry_a_unit(value: object, kib: int) -> None:
    assert option_values.parse_size_kib(value, name="--max-memory-per-child") == kib


@pytest.mark.parametrize("value", ["lots", "200XB", "-5"])
def test_bad_memory_sizes_are_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="--max-memory-per-child expects a size"):
        option_values.parse_size_kib(value, name="--max-memory-per-child")


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_concurrency_must_be_a_positive_integer(value: str) -> None:
    with pytest.raises(
        ConfigurationError, match=f"--concurrency expects a positive integer; got '{value}'"
    ):
        option_values.parse_positive_int(value, name="--concurrency")


def test_an_unknown_pool_is_refused_with_the_choices_and_a_suggestion() -> None:
    with pytest.raises(ConfigurationError) as info:
        option_values.parse_pool("thread", name="--pool")
    assert "solo, threads, prefork" in str(info.value)
    assert "Did you mean 'threads'?" in str(info.value)


def test_queue_names_are_split_and_deduplicated() -> None:
    assert option_values.parse_queues("a, b,a", name="-Q") == ("a", "b")
    with pytest.raises(ConfigurationError, match="-Q expects comma-separated queue names"):
        option_values.parse_queues("a,,b", name="-Q")


@pytest.mark.parametrize(
    ("queue", "allowed"),
    [
        ("q" * 200, True),
        ("q" * 201, False),
        ("q" * 300, False),
        ("é" * 127, True),  # 254 bytes in UTF-8
        ("é" * 128, False),  # 256 bytes: more than an AMQP queue name can hold
        ("mail.high:1-x_y", True),
        ("a b", False),
        ("<script>", False),
        ("", False),
    ],
)
def test_one_queue_name_rule_bounds_characters_and_utf8_bytes(queue: str, allowed: bool) -> None:
    assert (option_values.queue_name_error(queue) == "") is allowed
    if not allowed:
        with pytest.raises(ConfigurationError, match=r"^-Q expects comma-separated queue names; "):
            option_values.parse_queues(queue, name="-Q")


def test_layers_apply_in_order_and_remember_their_source() -> None:
    config = conf.load_config(
        djworker_settings={
            "POOL": "threads",
            "CONCURRENCY": 2,
            "QUEUES": ["s"],
            "PREFETCH_MULTIPLIER": 2,
        },
        admin={"concurrency": 3, "queues": ("a",), "prefetch_multiplier": 8},
        environ={"DJWORKER_QUEUES": "e1,e2", "DJWORKER_PREFETCH_MULTIPLIER": "1"},
        cli={"prefetch_multiplier": 0, "pool": None},
    )
    assert (config.pool, config.sources["pool"]) == ("threads", conf.SETTINGS)
    assert (config.concurrency, config.sources["concurrency"]) == (3, conf.ADMIN)
    assert (config.queues, config.sources["queues"]) == (("e1", "e2"), conf.ENV)
    assert (config.prefetch_multiplier, config.sources["prefetch_multiplier"]) == (0, conf.CLI)
    assert config.sources["loglevel"] == conf.DEFAULT
    assert config.pinned == {"queues": conf.ENV, "prefetch_multiplier": conf.CLI}


def test_unknown_settings_keys_are_refused_with_the_known_ones() -> None:
    with pytest.raises(conf.SettingsError) as info:
        conf.read_settings({"BROKER": "redis://"})
    assert "unknown keys ['BROKER']" in str(info.value)
    assert "BROKER_URL" in info.value.hint


def test_a_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(
        ConfigurationError, match="DJWORKER_CONCURRENCY expects a positive integer; got 'many'"
    ):
        conf.load_config(environ={"DJWORKER_CONCURRENCY": "many"}, djworker_settings={})


@pytest.mark.parametrize(
    ("autoscale", "concurrency", "start"),
    [((1, 3), None, 1), ((1, 3), 2, 2), ((2, 4), 9, 4), ((2, 4), 1, 2), (None, 5, 5)],
)
def test_with_autoscale_the_bounds_win_and_concurrency_only_sets_the_start(
    autoscale: tuple[int, int] | None, concurrency: int | None, start: int
) -> None:
    config = conf.WorkerSettings(autoscale=autoscale, concurrency=concurrency)
    assert config.initial_pool_size() == start


def test_a_pool_with_a_fixed_size_starts_at_it_when_no_concurrency_is_given() -> None:
    assert conf.WorkerSettings(pool="solo").initial_pool_size(fixed_size=1) == 1


def test_a_soft_limit_at_or_above_the_hard_one_is_refused_naming_both_and_their_layers() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"the hard time limit \(DJWORKER_TIME_LIMIT 5 s\) must be above the soft limit "
        r"\(--soft-time-limit 10 s\)",
    ):
        conf.load_config(
            environ={"DJWORKER_TIME_LIMIT": "5"},
            djworker_settings={},
            cli={"soft_time_limit_s": 10},
        )
    with pytest.raises(ConfigurationError, match=r"\(settings.DJWORKER\['SOFT_TIME_LIMIT'\] 5 s\)"):
        conf.load_config(environ={}, djworker_settings={"TIME_LIMIT": 5, "SOFT_TIME_LIMIT": 5})
    below = conf.load_config(
        environ={}, djworker_settings={"POOL": "prefork", "TIME_LIMIT": 5, "SOFT_TIME_LIMIT": 4}
    )
    assert (below.soft_time_limit_s, below.time_limit_s) == (4, 5)


def test_the_delivery_cap_defaults_to_five_and_every_layer_can_set_it_zero_meaning_no_cap() -> None:
    assert conf.load_config(djworker_settings={}, environ={}).max_deliveries == 5
    config = conf.load_config(
        djworker_settings={"MAX_DELIVERIES": 3},
        admin={"max_deliveries": 7},
        environ={"DJWORKER_MAX_DELIVERIES": "0"},
    )
    assert (config.max_deliveries, config.sources["max_deliveries"]) == (0, conf.ENV)
    config = conf.load_config(djworker_settings={"MAX_DELIVERIES": 3}, environ={})
    assert (config.max_deliveries, config.sources["max_deliveries"]) == (3, conf.SETTINGS)


@pytest.mark.parametrize("value", ["-1", "many", "2.5", True, 1.5])
def test_a_bad_delivery_cap_is_refused_naming_the_value(value: object) -> None:
    with pytest.raises(
        ConfigurationError, match=r"--max-deliveries expects a whole number >= 0 .*0 means no cap"
    ):
        option_values.parse_delivery_cap(value, name="--max-deliveries")
